package status_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"math"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/status"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// fakeSluice registers the metrics the report reads, under sluice's names.
type fakeSluice struct {
	in, out, dead, dropped prometheus.Counter
	inflight, connected    prometheus.Gauge
	reconnects             *prometheus.CounterVec
	ack                    prometheus.Histogram
	pending, ackPending    prometheus.Gauge
	stored, oldest, queue  prometheus.Gauge
	window                 prometheus.Gauge
}

func newFake(reg prometheus.Registerer) *fakeSluice {
	f := promauto.With(reg)
	c := func(name string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Name: name, Help: "h"})
	}
	g := func(name string) prometheus.Gauge { return f.NewGauge(prometheus.GaugeOpts{Name: name, Help: "h"}) }
	fs := &fakeSluice{
		in: c("sluice_pipeline_records_in_total"), out: c("sluice_pipeline_records_out_total"),
		dead: c("sluice_pipeline_dead_lettered_total"), dropped: c("sluice_pipeline_records_dropped_total"),
		inflight: g("sluice_pipeline_inflight_records"), connected: g("sluice_sink_connected"),
		reconnects: f.NewCounterVec(prometheus.CounterOpts{Name: "sluice_sink_reconnects_total", Help: "h"}, []string{"reason"}),
		ack:        f.NewHistogram(prometheus.HistogramOpts{Name: "sluice_sink_ack_seconds", Help: "h", Buckets: []float64{0.001, 0.01, 0.1}}),
		pending:    g("sluice_queue_pending_messages"), ackPending: g("sluice_queue_ack_pending"),
		stored: g("sluice_queue_stream_messages"), oldest: g("sluice_queue_oldest_unacked_age_seconds"),
		queue: g("sluice_queue_connected"), window: g("sluice_sink_window_frames"),
	}
	fs.reconnects.WithLabelValues("write_error")
	fs.reconnects.WithLabelValues("requested")
	return fs
}

func TestSampler_Report(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFake(reg)
	t0 := time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC)
	s := status.NewSampler(status.Options{Gatherer: reg, Version: "v1.2.3", Start: t0, Framing: "acked", Socket: "./sluice.sock", Stream: "INGEST",
		MaxInflightRecords: 50000, MaxInflightBytes: 16 << 20, WindowFrames: 256, WindowBytes: 8 << 20, Logger: slog.New(slog.DiscardHandler)})

	// Before any snapshot: totals and state, no rates.
	f.in.Add(100)
	r, err := s.Report(t0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Records.PerSecond != nil || r.Records.Total.In != 100 {
		t.Fatalf("first report: per second %+v, total %+v", r.Records.PerSecond, r.Records.Total)
	}
	s.SampleAt(t0)
	f.reconnects.WithLabelValues("write_error").Add(2) // more than a minute ago
	s.SampleAt(t0.Add(30 * time.Second))
	for i := 1; i <= 65; i++ {
		s.SampleAt(t0.Add(time.Duration(30+i) * time.Second))
	}
	now := t0.Add(100 * time.Second)
	// Over the last 5 s: 5,000 in, 4,500 out, 50 dead, 10 dropped.
	f.in.Add(5000)
	f.out.Add(4500)
	f.dead.Add(50)
	f.dropped.Add(10)
	f.reconnects.WithLabelValues("requested").Inc()
	f.inflight.Set(1024)
	f.connected.Set(1)
	f.queue.Set(1)
	f.window.Set(12)
	f.pending.Set(1204)
	f.ackPending.Set(120)
	f.stored.Set(1324)
	f.oldest.Set(2.5)
	for range 90 {
		f.ack.Observe(0.0005)
	}
	for range 10 {
		f.ack.Observe(0.05)
	}
	r, err = s.Report(now)
	if err != nil {
		t.Fatal(err)
	}
	ps := r.Records.PerSecond
	if ps == nil || float64(r.Records.RateWindow) != 5 || ps.In != 1000 || ps.Out != 900 || ps.DeadLettered != 10 || ps.Dropped != 2 {
		t.Fatalf("per second %+v over %v s, want in 1000 out 900 dead 10 dropped 2 over 5 s", ps, r.Records.RateWindow)
	}
	rc := r.Reconnects
	if rc.Total != 3 || rc.LastMinute != 1 || len(rc.ByReason) != 2 || rc.ByReason[0] != (status.Reason{Reason: "requested", Total: 1, LastMinute: 1}) ||
		rc.ByReason[1] != (status.Reason{Reason: "write_error", Total: 2, LastMinute: 0}) {
		t.Fatalf("reconnects %+v", rc)
	}
	l := r.Drainer.AckLatency
	// 90 observations in (0, 1ms], 10 in (10ms, 100ms]: the median
	// interpolates within the first bucket, p99 within the third.
	if l == nil || l.Count != 100 || math.Abs(float64(l.P50)-0.001*50/90) > 1e-9 || math.Abs(float64(l.P99)-(0.01+0.09*9/10)) > 1e-9 {
		t.Fatalf("ack latency %+v", l)
	}
	if b := r.Queue.Backlog; b == nil || b.Pending != 1204 || b.AckPending != 120 || b.OldestUnackedAge != 2.5 {
		t.Fatalf("backlog %+v", b)
	}

	var out bytes.Buffer
	status.Render(&out, "127.0.0.1:9464", r)
	golden(t, "render.golden", out.Bytes())

	// The JSON round-trips, NaN percentiles as null.
	r.Drainer.AckLatency.P90 = status.Seconds(math.NaN())
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"p90_seconds":null`) {
		t.Fatalf("NaN not encoded as null: %s", b)
	}
	var back status.Report
	if err := json.Unmarshal(b, &back); err != nil || back.Records.Total != r.Records.Total || !math.IsNaN(float64(back.Drainer.AckLatency.P90)) {
		t.Fatalf("round trip: %v %+v", err, back)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./status -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs (go test ./status -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestFetch_OverAdminAPI(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFake(reg)
	f.in.Add(7)
	s := status.NewSampler(status.Options{Gatherer: reg, Framing: "lines", Logger: slog.New(slog.DiscardHandler)})
	a := obs.NewAdmin(reg, slog.New(slog.DiscardHandler))
	s.Mount(a)
	srv := httptest.NewServer(a)
	defer srv.Close()
	r, err := status.Fetch(context.Background(), srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if r.Records.Total.In != 7 || r.Drainer.Window != nil || r.Drainer.AckLatency != nil {
		t.Fatalf("report %+v", r)
	}

	// Watch redraws in place until ctx ends.
	ctx, cancel := context.WithCancel(context.Background())
	var screen syncWriter
	screen.frames = make(chan string, 10)
	done := make(chan error, 1)
	go func() { done <- status.Watch(ctx, srv.Client(), srv.URL, 10*time.Millisecond, &screen) }()
	first, second := <-screen.frames, <-screen.frames
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, fr := range []string{first, second} {
		if !strings.HasPrefix(fr, "\x1b[H\x1b[2J") || !strings.Contains(fr, "total      in 7 ·") || !strings.Contains(fr, "refreshing every 10ms") {
			t.Fatalf("frame:\n%q", fr)
		}
	}
}

func TestFetch_NoSluice(t *testing.T) {
	srv := httptest.NewServer(nil)
	addr := srv.Listener.Addr().String()
	srv.Close()
	_, err := status.Fetch(context.Background(), srv.Client(), addr)
	if err == nil || !strings.Contains(err.Error(), "is sluice run up, with its admin server at "+addr+"? see admin.listen, or pass --admin") {
		t.Fatalf("err = %v", err)
	}
	if _, err := status.Fetch(context.Background(), srv.Client(), "off"); err == nil || !strings.Contains(err.Error(), "admin server is off") {
		t.Fatalf("admin off: err = %v", err)
	}
}

// syncWriter hands each Write (one frame) to frames, dropping when full.
type syncWriter struct{ frames chan string }

func (w *syncWriter) Write(p []byte) (int, error) {
	select {
	case w.frames <- string(p):
	default:
	}
	return len(p), nil
}
