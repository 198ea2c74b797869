package pipeline_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/process"
	"github.com/sluice-dev/sluice/sink"
	"github.com/sluice-dev/sluice/wire"
)

// delayedAckSource is a fakeSource whose first Ack takes delay: a queue
// server that stalls for a while. The messages in later become fetchable
// when that Ack starts, so that their frames travel while it stalls.
type delayedAckSource struct {
	*fakeSource
	delay time.Duration
	later []pipeline.Message
	once  sync.Once
}

func (s *delayedAckSource) Ack(msgs []pipeline.Message) error {
	s.once.Do(func() {
		s.mu.Lock()
		s.queue = append(s.queue, s.later...)
		s.mu.Unlock()
		time.Sleep(s.delay)
	})
	return s.fakeSource.Ack(msgs)
}

// metricValue reads a counter from reg: the series with label=value, or
// the first series when label is "". family reports whether the metric is
// registered and has a series at all; a series not created reads 0.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) (v float64, family bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" {
				return m.GetCounter().GetValue(), true
			}
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue(), true
				}
			}
		}
		return 0, true
	}
	return 0, false
}

// TestPipeline_SlowAckWithAckedSink runs the real acked sink against the
// real acked drainer, with a queue whose Ack stalls for far longer than the
// sink's ack timeout. The sink's reader of the drainer's ACKs must go on
// reading meanwhile (acking the queue is the settler's work): no ack
// timeout fires, and every message is acked in the end.
func TestPipeline_SlowAckWithAckedSink(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	sock := filepath.Join(testkit.ShortDir(t), "d.sock")

	srv, err := drain.New(drain.Options{Socket: sock, Out: filepath.Join(t.TempDir(), "out"), Framing: wire.FramingAcked,
		Logger: quiet, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	drainCtx, stopDrain := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(drainCtx) }()
	defer func() {
		stopDrain()
		if err := <-served; err != nil {
			t.Errorf("drainer Serve: %v", err)
		}
	}()

	w := sink.New(sink.Options{Path: sock, Framing: "acked", AckTimeout: 300 * time.Millisecond, Logger: quiet, Registerer: reg})
	w.Start(context.Background())
	defer w.Close()

	const n = 60
	var msgs []string
	for i := range n {
		msgs = append(msgs, fmt.Sprintf(`{"m":%d}`, i))
	}
	// The first message is fetched alone; the others once its Ack stalls.
	fs := newFakeSource(msgs...)
	src := &delayedAckSource{fakeSource: fs, delay: 2 * time.Second, later: fs.queue[1:]}
	fs.queue = fs.queue[:1]
	o := opts(reg)
	o.ChunkRecords = 2 // many frames
	o.ShutdownTimeout = 5 * time.Second
	p := pipeline.New(src, &fakeDLQ{}, process.Validator{}, w, o)
	stop := start(t, p)
	testkit.WaitFor(t, 30*time.Second, func() error {
		if _, a, _ := src.counts(); a != n {
			return fmt.Errorf("%d of %d messages acked", a, n)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	if frames, ok := metricValue(t, reg, "sluice_sink_frames_total", "", ""); !ok || frames == 0 {
		t.Fatalf("sluice_sink_frames_total = %v (registered: %v): the sink did not report to the registry", frames, ok)
	}
	if v, _ := metricValue(t, reg, "sluice_sink_reconnects_total", "reason", "ack_timeout"); v != 0 {
		t.Fatalf("sluice_sink_reconnects_total{reason=\"ack_timeout\"} = %v, want 0: a slow queue Ack stalled the reading of the drainer's ACKs", v)
	}
	for seq, c := range src.acked {
		if c != 1 {
			t.Errorf("message %d acked %d times", seq, c)
		}
	}
}

// TestPipeline_TooLargeWithAckedSink sends, through the real acked sink and
// drainer, a message with more records than one DATA frame may hold (the
// drainer grants wire.DefaultMaxRecords): the sink refuses it with an error
// wrapping pipeline.ErrTooLarge, and the pipeline dead-letters it whole,
// once, while the messages around it are delivered. Before, it was nak'ed
// and redelivered forever.
func TestPipeline_TooLargeWithAckedSink(t *testing.T) {
	testTooLarge(t, wire.FramingAcked, 0, strings.Repeat("1\n", wire.DefaultMaxRecords+10))
}

// TestPipeline_TooLongWithLinesSink: in lines framing, a record longer than
// the drainer's line limit made the drainer close every connection it was
// sent on, and the pipeline stopped behind it. The sink now refuses it
// (sink.ErrRecordTooLong, wrapping pipeline.ErrTooLarge) and the pipeline
// dead-letters its message while the others flow.
func TestPipeline_TooLongWithLinesSink(t *testing.T) {
	const maxLine = 64 << 10
	testTooLarge(t, wire.FramingLines, maxLine, `{"pad":"`+strings.Repeat("x", maxLine)+`"}`)
}

func testTooLarge(t *testing.T, framing wire.Framing, maxLine int, huge string) {
	quiet := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	sock := filepath.Join(testkit.ShortDir(t), "d.sock")
	srv, err := drain.New(drain.Options{Socket: sock, Out: filepath.Join(t.TempDir(), "out"), Framing: framing, MaxLine: maxLine,
		Logger: quiet, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	drainCtx, stopDrain := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(drainCtx) }()
	defer func() {
		stopDrain()
		if err := <-served; err != nil {
			t.Errorf("drainer Serve: %v", err)
		}
	}()
	w := sink.New(sink.Options{Path: sock, Framing: framing, MaxLineBytes: maxLine, Logger: quiet, Registerer: reg})
	w.Start(context.Background())
	defer w.Close()

	src := newFakeSource(`{"a":1}`, huge, `{"a":3}`)
	dlq := &fakeDLQ{}
	o := opts(reg)
	o.MaxInflightRecords = 4 * wire.DefaultMaxRecords
	o.ChunkRecords = 4 * wire.DefaultMaxRecords // one chunk holds all three
	p := pipeline.New(src, dlq, process.Validator{}, w, o)
	stop := start(t, p)
	testkit.WaitFor(t, 30*time.Second, func() error {
		if _, a, _ := src.counts(); a != 3 {
			return fmt.Errorf("%d of 3 messages acked", a)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	dlq.mu.Lock()
	got := dlq.got
	dlq.mu.Unlock()
	if len(got) != 1 || !strings.HasPrefix(got[0], "2/-1 ") {
		t.Fatalf("dead letters: %d (%.80q), want message 2 once, whole (index -1)", len(got), got)
	}
	if _, _, naked := src.counts(); naked != 0 {
		t.Errorf("%d naks: a message too large for a frame must not be redelivered", naked)
	}
	if v, _ := metricValue(t, reg, "sluice_pipeline_messages_too_large_total", "", ""); v != 1 {
		t.Errorf("sluice_pipeline_messages_too_large_total = %v, want 1", v)
	}
	for _, seq := range []uint64{1, 3} {
		if src.acked[seq] != 1 {
			t.Errorf("message %d acked %d times, want once", seq, src.acked[seq])
		}
	}
}
