package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/process"
	"github.com/sluice-dev/sluice/record"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeMsg is a queue message.
type fakeMsg struct {
	seq  uint64
	data []byte
}

// fakeEpoch is the incarnation of the fake stream "TEST".
const fakeEpoch = 7

func (m *fakeMsg) Data() []byte    { return m.data }
func (m *fakeMsg) Subject() string { return "ingest.test" }
func (m *fakeMsg) ID() record.MsgID {
	return record.MsgID{Stream: "TEST", Epoch: fakeEpoch, Seq: m.seq}
}

// fakeSource hands out a fixed set of messages once and records acks/naks.
type fakeSource struct {
	mu      sync.Mutex
	queue   []pipeline.Message // not yet fetched
	fetched int
	acked   map[uint64]int
	naked   map[uint64]int
	maxes   []int // the max of every Fetch call
	// fetchHook, if set, runs before each fetch returns.
}

func newFakeSource(msgs ...string) *fakeSource {
	s := &fakeSource{acked: map[uint64]int{}, naked: map[uint64]int{}}
	for i, d := range msgs {
		s.queue = append(s.queue, &fakeMsg{seq: uint64(i + 1), data: []byte(d)})
	}
	return s
}

func (s *fakeSource) Fetch(ctx context.Context, max int, wait time.Duration) ([]pipeline.Message, error) {
	s.mu.Lock()
	s.maxes = append(s.maxes, max)
	n := min(max, len(s.queue))
	out := s.queue[:n:n]
	s.queue = s.queue[n:]
	s.fetched += n
	s.mu.Unlock()
	if n == 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

func (s *fakeSource) Ack(msgs []pipeline.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.acked[m.ID().Seq]++
	}
	return nil
}

func (s *fakeSource) Nak(msgs []pipeline.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.naked[m.ID().Seq]++
		s.queue = append(s.queue, m) // redeliver
	}
	return nil
}

func (s *fakeSource) counts() (fetched, acked, naked int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.acked {
		acked += n
	}
	for _, n := range s.naked {
		naked += n
	}
	return s.fetched, acked, naked
}

// fakeDLQ records dead letters.
type fakeDLQ struct {
	mu   sync.Mutex
	got  []string
	fail bool
}

func (d *fakeDLQ) DeadLetter(_ context.Context, from pipeline.Message, idx int, rec []byte, reason string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail {
		return errors.New("dlq down")
	}
	d.got = append(d.got, fmt.Sprintf("%d/%d %s: %s", from.ID().Seq, idx, rec, reason))
	return nil
}

// gateSink delivers frames; when hold is set, it keeps done callbacks until
// release is called, like an acked drainer that acknowledges late.
type gateSink struct {
	mu      sync.Mutex
	hold    bool
	held    []func(error)
	records []record.Record
	block   chan struct{} // if non-nil, Send blocks until it is closed or ctx ends
}

func (k *gateSink) Send(ctx context.Context, recs []record.Record, done func(error)) error {
	if k.block != nil {
		select {
		case <-k.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	k.mu.Lock()
	k.records = append(k.records, recs...)
	if k.hold {
		k.held = append(k.held, done)
		k.mu.Unlock()
		return nil
	}
	k.mu.Unlock()
	done(nil)
	return nil
}

func (k *gateSink) release(err error) int {
	k.mu.Lock()
	held := k.held
	k.held = nil
	k.mu.Unlock()
	for _, d := range held {
		d(err)
	}
	return len(held)
}

func (k *gateSink) delivered() []record.Record {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]record.Record(nil), k.records...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func start(t *testing.T, p *pipeline.Pipeline) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	return func() error { cancel(); return <-errc }
}

func opts(reg prometheus.Registerer) pipeline.Options {
	return pipeline.Options{Workers: 3, BatchSize: 7, ChunkRecords: 5, FetchWait: 5 * time.Millisecond,
		ShutdownTimeout: 200 * time.Millisecond, Registerer: reg, Logger: slog.New(slog.DiscardHandler)}
}

func TestPipeline_DeliversAndAcksEveryMessage(t *testing.T) {
	var msgs []string
	for i := range 100 {
		// Mix single-record and multi-record messages.
		if i%3 == 0 {
			msgs = append(msgs, fmt.Sprintf("{\"m\":%d,\"i\":0}\n{\"m\":%d,\"i\":1}\n", i, i))
		} else {
			msgs = append(msgs, fmt.Sprintf(`{"m":%d,"i":0}`, i))
		}
	}
	src, snk, reg := newFakeSource(msgs...), &gateSink{}, prometheus.NewRegistry()
	p := pipeline.New(src, &fakeDLQ{}, process.Validator{}, snk, opts(reg))
	stop := start(t, p)
	waitFor(t, "all messages acked", func() bool { _, a, _ := src.counts(); return a == 100 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	_, acked, naked := src.counts()
	if acked != 100 || naked != 0 {
		t.Fatalf("acked %d naked %d, want 100 and 0", acked, naked)
	}
	for seq, n := range src.acked {
		if n != 1 {
			t.Errorf("message %d acked %d times", seq, n)
		}
	}
	recs := snk.delivered()
	if len(recs) != 134 { // 100 messages, 34 of them with two records
		t.Fatalf("delivered %d records, want 134", len(recs))
	}
	seen := map[record.ID]bool{}
	for _, r := range recs {
		if seen[r.ID] {
			t.Fatalf("record %+v delivered twice", r.ID)
		}
		seen[r.ID] = true
		want := fmt.Sprintf(`{"m":%d,"i":%d}`, r.ID.Seq-1, r.ID.Index)
		if string(r.Data) != want || r.ID.Stream != "TEST" || r.ID.Epoch != fakeEpoch {
			t.Fatalf("record %+v = %s, want %s", r.ID, r.Data, want)
		}
	}
	if got := testutil.ToFloat64(p2c(t, reg, "sluice_pipeline_records_out_total")); got != 134 {
		t.Fatalf("records_out = %v, want 134", got)
	}
}

// p2c finds a registered counter or gauge by name.
func p2c(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
			g.Set(v)
			return g
		}
	}
	t.Fatalf("metric %s not registered", name)
	return nil
}

func TestPipeline_NoAckBeforeDelivery(t *testing.T) {
	src := newFakeSource(`{"a":1}`, `{"a":2}`, `{"a":3}`)
	snk := &gateSink{hold: true}
	p := pipeline.New(src, &fakeDLQ{}, process.Validator{}, snk, opts(nil))
	stop := start(t, p)
	waitFor(t, "records handed to the sink", func() bool { return len(snk.delivered()) == 3 })
	// The drainer has not acknowledged anything: the queue must see no ack.
	if _, acked, _ := src.counts(); acked != 0 {
		t.Fatalf("queue saw %d acks before the sink delivered", acked)
	}
	if n := snk.release(nil); n == 0 {
		t.Fatal("no frames held")
	}
	waitFor(t, "acks after delivery", func() bool { _, a, _ := src.counts(); return a == 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestPipeline_FailedDeliveryIsRedelivered(t *testing.T) {
	src := newFakeSource(`{"a":1}`)
	snk := &gateSink{hold: true}
	p := pipeline.New(src, &fakeDLQ{}, process.Validator{}, snk, opts(nil))
	stop := start(t, p)
	waitFor(t, "frame held", func() bool { return len(snk.delivered()) == 1 })
	snk.release(errors.New("sink closed"))
	waitFor(t, "nak", func() bool { _, _, n := src.counts(); return n >= 1 })
	// Redelivered and this time delivered.
	waitFor(t, "redelivery", func() bool { return len(snk.delivered()) == 2 })
	snk.mu.Lock()
	snk.hold = false
	snk.mu.Unlock()
	snk.release(nil)
	waitFor(t, "ack", func() bool { _, a, _ := src.counts(); return a == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestPipeline_BadRecordsGoToDeadLetter(t *testing.T) {
	src := newFakeSource("{\"ok\":1}\n{broken\n{\"ok\":2}", `not json`, `{"ok":3}`)
	dlq, snk := &fakeDLQ{}, &gateSink{}
	p := pipeline.New(src, dlq, process.Validator{}, snk, opts(nil))
	stop := start(t, p)
	waitFor(t, "acks", func() bool { _, a, _ := src.counts(); return a == 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range snk.delivered() {
		got = append(got, string(r.Data))
	}
	if strings.Join(got, ",") != `{"ok":1},{"ok":2},{"ok":3}` && len(got) != 3 {
		t.Fatalf("delivered %v, want the three valid records", got)
	}
	sort.Strings(dlq.got) // workers finish in any order
	if len(dlq.got) != 2 || !strings.HasPrefix(dlq.got[0], "1/1 {broken: invalid_json: ") || !strings.HasPrefix(dlq.got[1], "2/0 not json: invalid_json: ") {
		t.Fatalf("dead letters = %q", dlq.got)
	}
}

func TestPipeline_DeadLetterFailureLeavesMessageForRedelivery(t *testing.T) {
	src := newFakeSource(`{bad`)
	dlq := &fakeDLQ{fail: true}
	p := pipeline.New(src, dlq, process.Validator{}, &gateSink{}, opts(nil))
	stop := start(t, p)
	waitFor(t, "nak", func() bool { _, _, n := src.counts(); return n >= 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, acked, _ := src.counts(); acked != 0 {
		t.Fatalf("message acked although its dead letter was not accepted")
	}
}

func TestPipeline_Backpressure(t *testing.T) {
	var msgs []string
	for i := range 1000 {
		msgs = append(msgs, fmt.Sprintf(`{"i":%d}`, i))
	}
	src := newFakeSource(msgs...)
	snk := &gateSink{block: make(chan struct{})} // a stopped drainer
	o := opts(nil)
	o.MaxInflightRecords = 10
	p := pipeline.New(src, &fakeDLQ{}, process.Validator{}, snk, o)
	stop := start(t, p)
	waitFor(t, "in-flight bound reached", func() bool { r, _ := p.Inflight(); return r >= 10 })
	// Give the fetcher every chance to overrun the bound.
	time.Sleep(50 * time.Millisecond)
	fetched, _, _ := src.counts()
	if fetched > 10+o.BatchSize {
		t.Fatalf("fetched %d messages with a stopped sink; bound is 10 (+ one batch of %d)", fetched, o.BatchSize)
	}
	close(snk.block) // the drainer is back
	waitFor(t, "everything acked", func() bool { _, a, _ := src.counts(); return a == 1000 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestPipeline_ShutdownAbandonsUndeliveredWork(t *testing.T) {
	src := newFakeSource(`{"a":1}`, `{"a":2}`)
	snk := &gateSink{block: make(chan struct{})} // never delivers
	p := pipeline.New(src, &fakeDLQ{}, process.Validator{}, snk, opts(nil))
	stop := start(t, p)
	waitFor(t, "work in flight", func() bool { r, _ := p.Inflight(); return r == 2 })
	if err := stop(); err != nil {
		t.Fatalf("Run after shutdown = %v, want nil", err)
	}
	_, acked, naked := src.counts()
	if acked != 0 || naked != 2 {
		t.Fatalf("acked %d naked %d; want 0 acked and both handed back", acked, naked)
	}
	if r, b := p.Inflight(); r != 0 || b != 0 {
		t.Fatalf("in flight after shutdown: %d records %d bytes", r, b)
	}
}

func TestPipeline_ShutdownWaitsForHeldFrames(t *testing.T) {
	src := newFakeSource(`{"a":1}`)
	snk := &gateSink{hold: true}
	o := opts(nil)
	o.ShutdownTimeout = 5 * time.Second
	p := pipeline.New(src, &fakeDLQ{}, process.Validator{}, snk, o)
	stop := start(t, p)
	waitFor(t, "frame held", func() bool { return len(snk.delivered()) == 1 })
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// Shutdown must wait for the frame's acknowledgement, then ack it.
	select {
	case err := <-stopped:
		t.Fatalf("Run returned %v while a frame was still waiting for the drainer", err)
	case <-time.After(50 * time.Millisecond):
	}
	snk.release(nil)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if _, acked, _ := src.counts(); acked != 1 {
		t.Fatalf("acked %d, want 1", acked)
	}
}

func TestPipeline_FetchSizedToBudget(t *testing.T) {
	// 100 records a message: a full batch would be 70 times the bound.
	var msgs []string
	for m := range 200 {
		var b strings.Builder
		for i := range 100 {
			fmt.Fprintf(&b, "{\"m\":%d,\"i\":%d}\n", m, i)
		}
		msgs = append(msgs, b.String())
	}
	src := newFakeSource(msgs...)
	snk := &gateSink{block: make(chan struct{})}
	o := opts(nil)
	o.BatchSize = 500
	o.MaxInflightRecords = 1000
	p := pipeline.New(src, &fakeDLQ{}, process.Validator{}, snk, o)
	stop := start(t, p)
	waitFor(t, "the pipeline to fill", func() bool { r, _ := p.Inflight(); return r >= 600 })
	if r, _ := p.Inflight(); r > 1000+500 {
		t.Fatalf("%d records in flight with a bound of 1000: fetches were not sized to the room left", r)
	}
	close(snk.block)
	waitFor(t, "everything acked", func() bool { _, a, _ := src.counts(); return a == 200 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.maxes[0] != 1 {
		t.Fatalf("first fetch asked for %d messages; want 1 (nothing known about their size yet)", src.maxes[0])
	}
	for i, m := range src.maxes[1:] {
		if m > 5 {
			t.Fatalf("fetch %d asked for %d messages of 100 records with a bound of 1000 records; want at most 5 (half the room)", i+1, m)
		}
	}
}

func TestPipeline_ProcessFaultRedelivers(t *testing.T) {
	pt, ok := fault.Lookup("pipeline.process")
	if !ok {
		t.Fatal("pipeline.process not registered")
	}
	pt.Set(&fault.Action{Kind: fault.Error, Count: 2}) // fail the first two chunks
	defer pt.Set(nil)
	src, snk := newFakeSource(`{"a":1}`, `{"a":2}`, `{"a":3}`), &gateSink{}
	p := pipeline.New(src, &fakeDLQ{}, process.Validator{}, snk, opts(nil))
	stop := start(t, p)
	waitFor(t, "every message acked after redelivery", func() bool { _, a, _ := src.counts(); return a == 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, _, naked := src.counts(); naked == 0 {
		t.Fatal("no message was handed back although the fault point failed two chunks")
	}
	if len(snk.delivered()) != 3 {
		t.Fatalf("delivered %d records, want 3", len(snk.delivered()))
	}
}
