package demo

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-dev/sluice/wire"
)

// Time limits of the drainer child.
const (
	drainerStartTimeout = 10 * time.Second // to listen on its socket
	drainerStopTimeout  = 10 * time.Second // from SIGTERM to SIGKILL
)

// drainer is the reference drainer running as a child process, which the
// demo kills and restarts. It is the one owner of the child: every start,
// kill and stop goes through its mutex, so no goroutine ever sees a child
// that another is replacing, and once stop has run no child is started
// again. mu is held while a child starts or stops (process I/O): it exists
// to serialise exactly that.
type drainer struct {
	// life bounds every child's life (exec.CommandContext): when it ends,
	// a running child is sent SIGTERM, and SIGKILL drainerStopTimeout later.
	life    context.Context
	exe     string // re-executed as "exe drain ..."
	socket  string
	out     string
	framing wire.Framing
	logPath string

	mu      sync.Mutex
	child   *child // guarded by mu; nil when none runs
	stopped bool   // guarded by mu; set by stop: start fails from then on
}

// child is one drainer process.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process was waited for
}

// start starts a drainer child and waits until it answers on its socket,
// or ctx ends.
func (d *drainer) start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return ErrStopped
	}
	if d.child != nil {
		return fmt.Errorf("demo: a drainer is already running")
	}
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	cmd := exec.CommandContext(d.life, d.exe, "drain", "--socket", d.socket, "--out", d.out, "--framing", string(d.framing))
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = drainerStopTimeout
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "SLUICE_FAULTS=")
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("demo: start the drainer %s: %w", d.exe, err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(c.done) }()
	d.child = c
	// Wait until it answers on its socket (a killed drainer leaves a stale
	// socket file behind, so the file's existence proves nothing).
	deadline := time.Now().Add(drainerStartTimeout)
	for {
		if conn, err := net.Dial("unix", d.socket); err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-c.done:
			d.child = nil
			return fmt.Errorf("demo: the drainer exited at start; see %s", d.logPath)
		case <-ctx.Done():
			d.stopLocked()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stopLocked()
			return fmt.Errorf("demo: the drainer did not listen on %s within %v; see %s", d.socket, drainerStartTimeout, d.logPath)
		}
	}
}

// kill sends the running child SIGKILL and waits until it is gone. It
// reports whether a child was running.
func (d *drainer) kill() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.child
	if c == nil {
		return false
	}
	_ = c.cmd.Process.Kill()
	<-c.done
	d.child = nil
	return true
}

// stop asks the running child to finish (SIGTERM) and waits; after
// drainerStopTimeout it kills it. No child starts after stop. It is
// idempotent.
func (d *drainer) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	d.stopLocked()
}

func (d *drainer) stopLocked() {
	c := d.child
	if c == nil {
		return
	}
	d.child = nil
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(drainerStopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}
