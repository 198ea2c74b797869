package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/obs"
	sluicestatus "github.com/sluice-dev/sluice/status"
	"github.com/sluice-dev/sluice/tap"
	"github.com/sluice-dev/sluice/wire"
)

// runCLI runs the sluice command line in-process and returns its stdout
// and stderr.
func runCLI(args ...string) (stdout, stderr string, err error) {
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	err = root.Execute()
	return out.String(), errb.String(), err
}

// scrape returns the /metrics page of the admin server at addr.
func scrape(t *testing.T, addr string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics from %s: %s %v", addr, resp.Status, err)
	}
	return b
}

// TestToolkit_AgainstRunningSluice runs sluice (acked framing, flight
// recorder on) and a drainer with its metrics server, sends records through,
// and checks the operator's tools against them: both /metrics pages pass
// promtool check metrics, sluice status (text and --json) shows what went
// through, and sluice tap out prints the records passing with their
// identity and subject.
func TestToolkit_AgainstRunningSluice(t *testing.T) {
	cfg, dir := testConfig(t)
	cfg.Sink.Framing = wire.FramingAcked
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Flight.Enabled = true
	cfg.Flight.Dir = filepath.Join(dir, "traces")
	dreg := prometheus.NewRegistry()
	startDrainOpts(t, drain.Options{Socket: cfg.Sink.Socket, Out: filepath.Join(dir, "out"), Framing: wire.FramingAcked, Registerer: dreg})
	dadmin := obs.NewAdmin(dreg, quietLogger())
	if err := dadmin.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dadmin.Close() })
	svc, stop := startService(t, cfg)
	addr := svc.admin.Addr()
	js := publisher(t, svc)
	publish(t, js, 0, 200, 4)
	if _, err := js.Publish(context.Background(), "ingest.bad", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "200 records out and 1 dead-lettered", func() error {
		out, dead := metricSum(t, svc, "sluice_pipeline_records_out_total"), metricSum(t, svc, "sluice_pipeline_dead_lettered_total")
		if out != 200 || dead != 1 {
			return fmt.Errorf("%v out, %v dead-lettered", out, dead)
		}
		return nil
	})

	t.Run("promtool check metrics", func(t *testing.T) {
		for name, a := range map[string]string{"sluice run": addr, "sluice drain": dadmin.Addr()} {
			page := scrape(t, a)
			out := testkit.RunPromtool(t, "", bytes.NewReader(page), "check", "metrics")
			if strings.TrimSpace(out) != "" {
				t.Errorf("%s /metrics: promtool check metrics:\n%s", name, out)
			}
		}
	})

	t.Run("status", func(t *testing.T) {
		stdout, _, err := runCLI("status", "--admin", addr, "--json")
		if err != nil {
			t.Fatal(err)
		}
		var r sluicestatus.Report
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("status --json: %v\n%s", err, stdout)
		}
		if r.Records.Total.Out != 200 || r.Records.Total.DeadLettered != 1 || r.Records.Total.In != 201 ||
			!r.Queue.Connected || !r.Drainer.Connected || r.Drainer.Framing != "acked" || r.Queue.Backlog == nil ||
			r.Drainer.AckLatency == nil || r.Drainer.AckLatency.Count == 0 || r.Inflight.MaxRecords != 50000 {
			t.Fatalf("status --json:\n%s", stdout)
		}
		stdout, _, err = runCLI("status", "--admin", addr)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"queue      connected     embedded, stream INGEST\n",
			"drainer    connected     acked framing, " + cfg.Sink.Socket + "\n",
			"total      in 201 · out 200 · dropped 0 · dead-lettered 1\n",
			"in flight  0 / 50,000 (0%) records",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("sluice status lacks %q:\n%s", want, stdout)
			}
		}
	})

	t.Run("status --watch in a terminal", func(t *testing.T) {
		screen := watchInTmux(t, addr)
		if n := strings.Count(screen, "sluice dev at "); n != 1 {
			t.Errorf("the terminal shows the header %d times, want once (a redraw in place):\n%s", n, screen)
		}
		for _, want := range []string{"drainer    connected     acked framing", "total      in 201 · out 200 · dropped 0 · dead-lettered 1", "refreshing every 100ms"} {
			if !strings.Contains(screen, want) {
				t.Errorf("the terminal lacks %q:\n%s", want, screen)
			}
		}
	})

	t.Run("tap out", func(t *testing.T) {
		type result struct {
			stdout string
			err    error
		}
		done := make(chan result, 1)
		go func() {
			stdout, _, err := runCLI("tap", "out", "--admin", addr, "--rate", "10000", "--max", "3")
			done <- result{stdout, err}
		}()
		waitFor(t, 10*time.Second, "the tap to subscribe", func() error {
			if !svc.taps.Tapping(tap.Out) {
				return fmt.Errorf("no tap on stage out")
			}
			return nil
		})
		publish(t, js, 1000, 1010, 1)
		var res result
		select {
		case res = <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("sluice tap out --max 3 did not end after 10 more records were published (%v records out, %v tapped)",
				metricSum(t, svc, "sluice_pipeline_records_out_total"), metricSum(t, svc, "sluice_tap_events_total"))
		}
		if res.err != nil {
			t.Fatal(res.err)
		}
		lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
		line := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} out INGEST epoch=[1-9]\d* seq=\d+ index=0 subject=ingest\.test \{"n":10\d\d,"pad":"x+"\}$`)
		if len(lines) != 3 {
			t.Fatalf("tap out --max 3 printed %d lines:\n%s", len(lines), res.stdout)
		}
		for _, l := range lines {
			if !line.MatchString(l) {
				t.Errorf("tap line %q does not match %s", l, line)
			}
		}
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// watchInTmux runs sluice status --watch against addr in a detached tmux
// terminal (on a private tmux server), lets it redraw a few times, and
// returns the screen. tmux is installed by scripts/test.
func watchInTmux(t *testing.T, addr string) string {
	t.Helper()
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Fatalf("tmux not found (%v): run the tests with scripts/test, which installs it as root with apt-get, or install it yourself: sudo apt-get install tmux", err)
	}
	sock := filepath.Join(testkit.ShortDir(t), "tmux")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run("new-session", "-d", "-x", "120", "-y", "40", "-s", "watch",
		"env", "SLUICE_TEST_MAIN=1", "TERM=xterm", self, "status", "--watch", "--interval", "100ms", "--admin", addr)
	t.Cleanup(func() { _ = exec.Command(tmux, "-S", sock, "kill-server").Run() })
	var screen string
	waitFor(t, 20*time.Second, "the screen to be redrawn", func() error {
		screen = run("capture-pane", "-p", "-t", "watch")
		// Each frame shows its time; two different times mean it was
		// redrawn, and the screen still shows one frame.
		if !strings.Contains(screen, "refreshing every") {
			return fmt.Errorf("no complete frame yet:\n%s", screen)
		}
		return nil
	})
	first := screen
	waitFor(t, 20*time.Second, "a second frame", func() error {
		screen = run("capture-pane", "-p", "-t", "watch")
		if screen == first || !strings.Contains(screen, "refreshing every") {
			return fmt.Errorf("the screen did not change")
		}
		return nil
	})
	return screen
}
