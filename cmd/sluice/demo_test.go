package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/demo"
	"github.com/sluice-dev/sluice/internal/testkit"
)

// demoTestOptions returns the demo's options as sluice demo builds them,
// with its files in a new short directory; the drainer child is this test
// binary running Main.
func demoTestOptions(t *testing.T, o demoOptions) (demo.Options, *testkit.SyncBuffer) {
	t.Helper()
	t.Setenv("SLUICE_TEST_MAIN", "1")
	out := &testkit.SyncBuffer{}
	cfg := config.Default()
	cfg.Pipeline.Workers = 2
	o.dir = filepath.Join(testkit.ShortDir(t), "d")
	if o.framing == "" {
		o.framing = "acked"
	}
	opts, err := demoRunOptions(&globals{stdout: out, stderr: io.Discard}, &cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	return opts, out
}

// drainersRunning returns the processes whose command line names socket:
// drainer children of the demo.
func drainersRunning(t *testing.T, socket string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		if args := strings.Split(string(b), "\x00"); len(args) > 1 && strings.Contains(string(b), socket) && args[1] == "drain" {
			found = append(found, filepath.Base(filepath.Dir(p)))
		}
	}
	return found
}

// assertNoDrainer fails the test if a drainer child of the demo is still
// running or listening.
func assertNoDrainer(t *testing.T, dir string) {
	t.Helper()
	socket := filepath.Join(dir, "sluice.sock")
	if pids := drainersRunning(t, socket); len(pids) > 0 {
		t.Errorf("drainer children still running after the demo returned: pids %v", pids)
	}
	if c, err := net.Dial("unix", socket); err == nil {
		c.Close()
		t.Errorf("a drainer still listens on %s", socket)
	}
}

// TestDemo_KillRestart runs the demo's kill and restart path in this
// process (under -race in CI): one SIGKILL of the drainer mid-run, then
// nothing lost or duplicated, and no drainer left when it returns.
func TestDemo_KillRestart(t *testing.T) {
	opts, out := demoTestOptions(t, demoOptions{duration: 3 * time.Second, rate: 1000, perMessage: 1, invalid: 0.01, kills: 1, keep: true})
	if err := demo.Run(context.Background(), opts); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, re := range []string{
		`(?m)^ +\ds  drainer killed with SIGKILL; restarting it$`,
		`(?m)^  lost +0$`, `(?m)^  duplicated +0$`, `(?m)^  drainer kills \(SIGKILL\) +1$`,
		`(?m)^  reconnects +[1-9]\d*$`,
		`(?m)^OK: every published record was drained exactly once$`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("output does not match %s:\n%s", re, text)
		}
	}
	assertNoDrainer(t, opts.Dir)
}

// TestDemo_InterruptStopsEveryChild ends the demo early, right after a
// drainer restart: every drainer child it started is stopped and waited
// for before it returns.
func TestDemo_InterruptStopsEveryChild(t *testing.T) {
	opts, out := demoTestOptions(t, demoOptions{duration: 6 * time.Second, rate: 1000, perMessage: 1, kills: 5, keep: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- demo.Run(ctx, opts) }()
	testkit.WaitFor(t, 30*time.Second, func() error {
		if !strings.Contains(out.String(), "drainer killed") {
			return errors.New("no drainer killed yet")
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, demo.ErrNotDelivered) && !errors.Is(err, context.Canceled) {
			t.Fatalf("demo: %v\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the demo did not return after its context ended\n%s", out.String())
	}
	t.Logf("output:\n%s", out.String())
	assertNoDrainer(t, opts.Dir)
	if n := bytes.Count([]byte(out.String()), []byte("drainer killed")); n >= 5 {
		t.Errorf("%d kills: the interrupt did not stop the killer", n)
	}
}
