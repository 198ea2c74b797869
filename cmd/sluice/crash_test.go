package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/queue"
)

// proc is sluice (this test binary re-executed with SLUICE_TEST_MAIN=1)
// running as a real child process, so it can be killed with SIGKILL.
type proc struct {
	t    *testing.T
	name string
	args []string
	env  []string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	exit int // exit code of the last run, -1 when killed by a signal
}

func newProc(t *testing.T, dir, name string, env []string, args ...string) *proc {
	return &proc{t: t, name: name, args: args, env: env, log: filepath.Join(dir, name+".log")}
}

func (p *proc) start() {
	p.t.Helper()
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], p.args...)
	cmd.Env = append(append(os.Environ(), "SLUICE_TEST_MAIN=1"), p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.exit = cmd.ProcessState.ExitCode()
		p.mu.Unlock()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// stop sends SIGTERM, waits up to 20s (then SIGKILL), and fails the test
// unless the process exited with status 0: graceful shutdown.
func (p *proc) stop() {
	p.t.Helper()
	p.terminate()
	p.mu.Lock()
	code := p.exit
	p.mu.Unlock()
	if code != 0 {
		p.t.Errorf("%s exited with status %d after SIGTERM, want 0 (log: %s)", p.name, code, p.log)
	}
}

func (p *proc) terminate() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		p.t.Errorf("%s did not stop within 20s of SIGTERM; killing it (log: %s)", p.name, p.log)
		p.kill()
	}
}

// crashRig is a NATS JetStream server in the test process (so it outlives
// every sluice), a sluice child and a drainer child, both in acked framing.
type crashRig struct {
	t     *testing.T
	dir   string
	url   string
	out   string
	js    jetstream.JetStream
	cfg   config.Queue
	run   *proc
	drain *proc
}

func newCrashRig(t *testing.T) *crashRig {
	t.Helper()
	dir := testkit.ShortDir(t)
	qcfg := config.Default().Queue
	qcfg.DataDir = filepath.Join(dir, "nats")
	qcfg.Listen = "127.0.0.1:0"
	eo := embeddedOptions(&config.Config{Queue: qcfg})
	eo.Logger = quietLogger()
	emb, err := queue.StartEmbedded(eo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, err := nats.Connect(emb.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	r := &crashRig{t: t, dir: dir, url: emb.ClientURL(), out: filepath.Join(dir, "out"), js: js, cfg: qcfg}
	sock := filepath.Join(dir, "s.sock")
	env := []string{
		"SLUICE_QUEUE_URL=" + r.url,
		"SLUICE_QUEUE_ACK_WAIT=2s",
		"SLUICE_SINK_SOCKET=" + sock,
		"SLUICE_SINK_FRAMING=acked",
		"SLUICE_SINK_BACKOFF_MIN=10ms",
		"SLUICE_SINK_BACKOFF_MAX=200ms",
		"SLUICE_SINK_ACK_TIMEOUT=3s",
		"SLUICE_ADMIN_LISTEN=off",
		"SLUICE_PIPELINE_WORKERS=2",
		"SLUICE_PIPELINE_FETCH_WAIT=50ms",
		"SLUICE_DRAIN_OUT=" + r.out,
		"SLUICE_LOG_LEVEL=debug",
	}
	r.run = newProc(t, dir, "run", env, "run")
	r.drain = newProc(t, dir, "drain", env, "drain")
	t.Cleanup(func() { r.run.kill(); r.drain.kill() })
	return r
}

// checkExactlyOnce fails unless the drainer's output holds records 0..total-1
// exactly once each.
func (r *crashRig) checkExactlyOnce(total int) {
	r.t.Helper()
	got := outputCounts(r.t, r.out)
	var missing, dups []string
	for n := range total {
		switch c := got[n]; {
		case c == 0:
			missing = append(missing, fmt.Sprint(n))
		case c > 1:
			dups = append(dups, fmt.Sprintf("%d×%d", n, c))
		}
	}
	if len(missing) > 0 || len(dups) > 0 {
		r.t.Fatalf("output not exactly once: %d missing %v, %d duplicated %v (logs in %s)",
			len(missing), head(missing), len(dups), head(dups), r.dir)
	}
}

func head(s []string) string {
	if len(s) > 10 {
		s = s[:10]
	}
	return strings.Join(s, ",")
}

// runCrashTest publishes total records while killing the chosen processes
// with SIGKILL every interval and restarting them, then lets the system
// settle and checks the output holds every record exactly once.
func runCrashTest(t *testing.T, killRun, killDrain bool) {
	if testing.Short() {
		t.Skip("crash tests start real processes")
	}
	r := newCrashRig(t)
	r.drain.start()
	r.run.start()

	const total = 30000
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); publish(t, r.js, 0, total, 10) }()

	kills := 0
	ticker := time.NewTicker(400 * time.Millisecond)
	defer ticker.Stop()
	deadline := time.After(40 * time.Second)
loop:
	for i := 0; ; i++ {
		select {
		case <-deadline:
			break loop
		case <-ticker.C:
		}
		select {
		case <-pubDone:
			if kills >= 4 {
				break loop
			}
		default:
		}
		if killDrain && (!killRun || i%2 == 0) {
			r.drain.kill()
			r.drain.start()
			kills++
		}
		if killRun && (!killDrain || i%2 == 1) {
			r.run.kill()
			r.run.start()
			kills++
		}
	}
	<-pubDone
	t.Logf("%d kills", kills)
	if kills < 3 {
		t.Fatalf("only %d kills happened; the test proves nothing", kills)
	}
	waitFor(t, 90*time.Second, "every record drained", distinct(t, total, r.out))
	waitFor(t, 60*time.Second, "the consumer to settle", func() error {
		return consumerSettled(t, r.js, &config.Config{Queue: r.cfg})()
	})
	r.run.stop()
	r.drain.stop()
	r.checkExactlyOnce(total)
}

func TestCrash_KillDrainer(t *testing.T) { runCrashTest(t, false, true) }
func TestCrash_KillSluice(t *testing.T)  { runCrashTest(t, true, false) }
func TestCrash_KillBoth(t *testing.T)    { runCrashTest(t, true, true) }
