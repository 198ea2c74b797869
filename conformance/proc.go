package conformance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"time"
)

// drainerProc is the drainer under test, started by the suite (Options.Exec).
type drainerProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited
}

// startDrainer starts Options.Exec in its own process group and waits until
// its socket accepts connections.
func (r *run) startDrainer(ctx context.Context) error {
	cmd := exec.Command("/bin/sh", "-c", r.opts.Exec)
	cmd.Stdout, cmd.Stderr = r.opts.Log, r.opts.Log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("conformance: start the drainer (%s): %w", r.opts.Exec, err)
	}
	p := &drainerProc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	r.mu.Lock()
	r.drain = p
	r.starts++
	r.mu.Unlock()
	deadline := time.Now().Add(r.opts.Timeout)
	for {
		c, err := net.DialTimeout("unix", r.opts.Socket, r.opts.Timeout)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("conformance: the drainer (%s) exited before it listened on %s: %v", r.opts.Exec, r.opts.Socket, cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.kill()
			return fmt.Errorf("conformance: the drainer (%s) did not listen on %s within %v: %w", r.opts.Exec, r.opts.Socket, r.opts.Timeout, err)
		}
	}
}

// kill sends SIGKILL to the drainer's process group and waits for it.
func (r *run) kill() {
	r.mu.Lock()
	p := r.drain
	r.drain = nil
	r.mu.Unlock()
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// stopDrainer asks the drainer to stop (SIGTERM), then kills it after the
// timeout.
func (r *run) stopDrainer() {
	r.mu.Lock()
	p := r.drain
	r.mu.Unlock()
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		r.mu.Lock()
		r.drain = nil
		r.mu.Unlock()
	case <-time.After(r.opts.Timeout):
		r.kill()
	}
}

// reachable checks that the socket accepts a connection.
func (r *run) reachable(ctx context.Context) error {
	d := net.Dialer{Timeout: r.opts.Timeout}
	c, err := d.DialContext(ctx, "unix", r.opts.Socket)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("conformance: nothing listens on %s: start the drainer, or let the suite start it with --exec: %w", r.opts.Socket, err)
		}
		return fmt.Errorf("conformance: connect to %s: %w", r.opts.Socket, err)
	}
	return c.Close()
}
