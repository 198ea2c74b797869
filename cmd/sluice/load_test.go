package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluice-dev/sluice/load"
)

// loadOutputJSON is what sluice load --json prints, decoded strictly.
type loadOutputJSON struct {
	URL              string       `json:"url"`
	Subject          string       `json:"subject"`
	Generator        load.Result  `json:"generator"`
	RecordsPerSecond float64      `json:"records_per_second"`
	Verify           *load.Report `json:"verify"`
	VerifyDir        string       `json:"verify_dir"`
	Reconnects       *int64       `json:"reconnects"`
	Events           []load.Event `json:"events"`
	Report           string       `json:"report"`
	Interrupted      bool         `json:"interrupted"`
	OK               bool         `json:"ok"`
}

// decodeOnlyJSON decodes stdout as exactly one JSON object and nothing else.
func decodeOnlyJSON(t *testing.T, stdout []byte) loadOutputJSON {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(stdout))
	dec.DisallowUnknownFields()
	var out loadOutputJSON
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	if rest, _ := io.ReadAll(dec.Buffered()); len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("stdout has more than the JSON object: %q", rest)
	}
	return out
}

// serviceWithAdmin starts the service with its admin server on a free
// loopback port, and returns it with its /metrics URL.
func serviceWithAdmin(t *testing.T) (*service, string, string) {
	t.Helper()
	cfg, dir := testConfig(t)
	cfg.Admin.Listen = "127.0.0.1:0"
	out := filepath.Join(dir, "out")
	startDrain(t, cfg.Sink.Socket, out)
	svc, _ := startService(t, cfg)
	return svc, "http://" + svc.admin.Addr() + "/metrics", out
}

// TestLoad_EndToEnd runs sluice load for 2 s against an in-process service
// and drainer, verifying live against the drainer's output: nothing may be
// lost, invalid records must go to the dead-letter subject instead, stdout
// must be one JSON object, and the HTML report must chart the run.
func TestLoad_EndToEnd(t *testing.T) {
	svc, metricsURL, out := serviceWithAdmin(t)
	page := filepath.Join(t.TempDir(), "report.html")
	var stdout, stderr bytes.Buffer
	err := runLoad(context.Background(), &stdout, &stderr, loadOptions{json: true, RunOptions: load.RunOptions{
		URL: svc.emb.ClientURL(), Token: queueToken(t, svc),
		Gen: load.GenOptions{
			Rate:       4000,
			Duration:   2 * time.Second,
			Publishers: 2,
			MaxPending: 64,
			PerMessage: 4,
			SizeSpread: 80,
			Invalid:    0.01,
		},
		Verify:      out,
		Wait:        30 * time.Second,
		Report:      page,
		MetricsURL:  metricsURL,
		SampleEvery: 250 * time.Millisecond,
	}})
	if err != nil {
		t.Fatalf("runLoad: %v\nstderr: %s\nstdout: %s", err, stderr.String(), stdout.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: %s", stderr.String())
	}
	got := decodeOnlyJSON(t, stdout.Bytes())
	res, rep := got.Generator, got.Verify
	if rep == nil {
		t.Fatal("no verify report in the JSON")
	}
	t.Logf("published %d (+%d invalid) in %v; received %d, lost %d, dup %d; latency p50 %v p99 %v",
		res.Published, res.Invalid, res.Elapsed, rep.Received, rep.Lost, rep.Duplicates, rep.Latency.P50, rep.Latency.P99)
	switch {
	case !got.OK:
		t.Error("ok = false")
	case rep.Lost != 0:
		t.Errorf("lost %d records: %v", rep.Lost, rep.LostIDs)
	case res.Published < 1000 || res.Invalid == 0 || res.Failed != 0:
		t.Errorf("generator: published %d, invalid %d, failed %d; want >= 1000 valid, some invalid, none failed",
			res.Published, res.Invalid, res.Failed)
	case rep.Received != res.Published || rep.Expected != res.Published || rep.Invalid != res.Invalid:
		t.Errorf("verify: received %d, expected %d, invalid %d; generator published %d, invalid %d",
			rep.Received, rep.Expected, rep.Invalid, res.Published, res.Invalid)
	case rep.InvalidLeaked != 0 || rep.Malformed != 0 || rep.OutOfRange != 0:
		t.Errorf("verify: invalid leaked %d, malformed %d, out of range %d", rep.InvalidLeaked, rep.Malformed, rep.OutOfRange)
	case rep.Latency.Count != rep.Received || rep.Latency.P50 <= 0 || rep.Latency.Max < rep.Latency.P99:
		t.Errorf("latency %+v for %d received", rep.Latency, rep.Received)
	case got.Reconnects == nil || *got.Reconnects != 0 || len(got.Events) != 0:
		t.Errorf("reconnects %v, events %v; want 0 read from %s", got.Reconnects, got.Events, metricsURL)
	case got.Report != page || got.Subject != load.DefaultSubject:
		t.Errorf("report %q, subject %q", got.Report, got.Subject)
	}

	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="chart-throughput"`, `id="chart-latency"`, `data-series="drained"`, "run " + res.RunID, "None: the sink kept its connection"} {
		if !bytes.Contains(html, []byte(want)) {
			t.Errorf("report lacks %q", want)
		}
	}
	// About 8 samples of 250 ms while publishing, each a point on the
	// published line.
	d := regexp.MustCompile(`data-series="published"><path d="([^"]*)"`).FindSubmatch(html)
	if d == nil || bytes.Count(d[1], []byte("L")) < 6 {
		t.Errorf("published line has too few points: %q", d)
	}
}

// TestLoad_LossFails proves the check can fail: verifying against a
// directory no drainer writes to loses every record, exits 1 after --wait,
// and names the first lost ids.
func TestLoad_LossFails(t *testing.T) {
	svc, _, _ := serviceWithAdmin(t)
	empty := t.TempDir()
	// What the directory holds before the run is skipped, in a file named as
	// the drainer names its output.
	if err := os.WriteFile(filepath.Join(empty, "sluice-20240101T000000.000Z-000001.jsonl"), []byte("junk\n{\"id\":\"lossy-1\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	start := time.Now()
	err := runLoad(context.Background(), &stdout, &stderr, loadOptions{RunOptions: load.RunOptions{
		URL:        svc.emb.ClientURL(),
		Token:      queueToken(t, svc),
		Gen:        load.GenOptions{Count: 200, RunID: "lossy"},
		Verify:     empty,
		Wait:       300 * time.Millisecond,
		MetricsURL: "http://127.0.0.1:1/metrics", // nothing listens: no reconnect figures
	}})
	var ec exitCodeError
	if !errors.As(err, &ec) || ec.code != exitError {
		t.Fatalf("runLoad = %v, want exit status 1\n%s", err, stdout.String())
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("took %v: --wait 300ms not honoured", time.Since(start))
	}
	text := stdout.String()
	for _, re := range []string{
		`(?m)^published +200$`,
		`(?m)^lost +200  \(lossy-1, lossy-2, lossy-3, .*lossy-10, \.\.\.\)$`,
		`(?m)^FAIL: 200 of 200 published records were not drained \(first: lossy-1, `,
		`(?m)^junk lines +0$`, `(?m)^lines +0$`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("summary does not match %s:\n%s", re, text)
		}
	}
	if strings.Contains(text, "reconnects") {
		t.Error("summary shows reconnects although the metrics endpoint was absent")
	}
}

// fakeDrainer subscribes to the load subject with core NATS and writes
// every record to dir copies times, as a drainer that duplicates would, in
// a file named as the drainer names its output (the final count reads
// those only).
func fakeDrainer(t *testing.T, url, token, dir string, copies int) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Token(token))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	f, err := os.Create(filepath.Join(dir, "sluice-20250101T000000.000Z-000001.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	t.Cleanup(func() { mu.Lock(); f.Close(); mu.Unlock() })
	_, err = nc.Subscribe(load.DefaultSubject, func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		for _, line := range bytes.Split(m.Data, []byte("\n")) {
			for range copies {
				f.Write(append(line, '\n'))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestLoad_Duplicates(t *testing.T) {
	svc, _, _ := serviceWithAdmin(t)
	for _, failOnDup := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail-on-dup=%v", failOnDup), func(t *testing.T) {
			dir := t.TempDir()
			fakeDrainer(t, svc.emb.ClientURL(), queueToken(t, svc), dir, 2)
			var stdout, stderr bytes.Buffer
			err := runLoad(context.Background(), &stdout, &stderr, loadOptions{json: true, RunOptions: load.RunOptions{
				URL: svc.emb.ClientURL(), Token: queueToken(t, svc), Gen: load.GenOptions{Count: 300, PerMessage: 3}, Verify: dir, Wait: 10 * time.Second,
				FailOnDup: failOnDup,
			}})
			var ec exitCodeError
			if failOnDup != (errors.As(err, &ec) && ec.code == exitError) {
				t.Fatalf("runLoad = %v with --fail-on-dup=%v", err, failOnDup)
			}
			if !failOnDup && err != nil {
				t.Fatal(err)
			}
			got := decodeOnlyJSON(t, stdout.Bytes())
			if rep := got.Verify; rep.Lost != 0 || rep.Duplicates != 300 || len(rep.DuplicateIDs) != 10 || got.OK == failOnDup {
				t.Errorf("lost %d, duplicates %d (%v), ok %v", rep.Lost, rep.Duplicates, rep.DuplicateIDs, got.OK)
			}
		})
	}
}

// TestLoad_ReconnectMarked restarts the drainer during a run: the sink
// reconnects, and the run's JSON and HTML report carry the event read from
// /metrics. (Lines framing may lose what sat in the socket buffers, so
// this test does not check loss.)
func TestLoad_ReconnectMarked(t *testing.T) {
	cfg, dir := testConfig(t)
	cfg.Admin.Listen = "127.0.0.1:0"
	out := filepath.Join(dir, "out")
	_, stopDrain := startDrain(t, cfg.Sink.Socket, out)
	svc, _ := startService(t, cfg)
	page := filepath.Join(t.TempDir(), "report.html")

	type result struct {
		stdout []byte
		err    error
	}
	done := make(chan result, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		err := runLoad(context.Background(), &stdout, &stderr, loadOptions{json: true, RunOptions: load.RunOptions{
			URL: svc.emb.ClientURL(), Token: queueToken(t, svc), Gen: load.GenOptions{Rate: 2000, Duration: 3 * time.Second}, Verify: out, Wait: 2 * time.Second,
			Report: page, MetricsURL: "http://" + svc.admin.Addr() + "/metrics", SampleEvery: 200 * time.Millisecond,
		}})
		done <- result{stdout.Bytes(), err}
	}()
	waitFor(t, 20*time.Second, "records drained before the restart", func() error {
		if n := countLines(t, out); n < 500 {
			return fmt.Errorf("%d lines", n)
		}
		return nil
	})
	stopDrain()
	startDrain(t, cfg.Sink.Socket, out)

	var r result
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("sluice load did not finish")
	}
	var ec exitCodeError
	if r.err != nil && !errors.As(r.err, &ec) {
		t.Fatalf("runLoad: %v", r.err)
	}
	got := decodeOnlyJSON(t, r.stdout)
	if got.Reconnects == nil || *got.Reconnects < 1 || len(got.Events) == 0 {
		t.Fatalf("reconnects %v, events %v: the drainer restart was not seen", got.Reconnects, got.Events)
	}
	if e := got.Events[0]; !strings.HasPrefix(e.Label, "reconnect: ") || e.At <= 0 || e.At > 10 {
		t.Errorf("event %+v", e)
	}
	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(html, []byte(`<g class="marker">`)); n < 2 {
		t.Errorf("%d markers in the report, want the reconnect on both charts", n)
	}
	if !bytes.Contains(html, []byte(got.Events[0].Label)) {
		t.Errorf("report lacks the event %q", got.Events[0].Label)
	}
}

// countLines counts the complete lines in dir's *.jsonl files.
func countLines(t *testing.T, dir string) int {
	t.Helper()
	n, err := load.NewTail(dir).Poll(func([]byte) {})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// queueToken is the token svc's embedded server asks of its clients.
func queueToken(t *testing.T, svc *service) string {
	t.Helper()
	tok, err := clientToken(svc.cfg, "")
	if err != nil || tok == "" {
		t.Fatalf("no queue token for the service (%v)", err)
	}
	return tok
}
