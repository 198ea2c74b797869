package pipeline_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/process"
	"github.com/sluice-dev/sluice/record"
)

// slowAckSource is a fakeSource whose Ack, once called, blocks until
// release is closed, like a queue server that stopped answering.
type slowAckSource struct {
	*fakeSource
	once    sync.Once
	entered chan struct{} // closed when the first Ack starts
	release chan struct{}
}

func (s *slowAckSource) Ack(msgs []pipeline.Message) error {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	return s.fakeSource.Ack(msgs)
}

func (k *gateSink) heldCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.held)
}

// TestPipeline_SlowAckDoesNotBlockDone: the sink's done (which the acked
// sink calls on its ACK reader) returns while Source.Ack is blocked: acking
// is the settler's work, not the caller of done's.
func TestPipeline_SlowAckDoesNotBlockDone(t *testing.T) {
	src := &slowAckSource{fakeSource: newFakeSource(`{"a":1}`, `{"a":2}`), entered: make(chan struct{}), release: make(chan struct{})}
	snk := &gateSink{hold: true}
	p := pipeline.New(src, &fakeDLQ{}, process.Validator{}, snk, opts(nil))
	stop := start(t, p)
	waitFor(t, "two frames held at the sink", func() bool { return snk.heldCount() == 2 })

	returned := make(chan struct{})
	go func() {
		snk.release(nil) // both dones, one after the other
		close(returned)
	}()
	select {
	case <-src.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("Source.Ack never called after the frames were delivered")
	}
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		close(src.release)
		t.Fatal("the sink's done did not return while Source.Ack was blocked")
	}
	if _, acked, _ := src.counts(); acked != 0 {
		t.Fatalf("%d acks recorded while Ack was blocked", acked)
	}
	close(src.release)
	waitFor(t, "both messages acked", func() bool { _, a, _ := src.counts(); return a == 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, acked, naked := src.counts(); acked != 2 || naked != 0 {
		t.Fatalf("acked %d naked %d, want 2 and 0", acked, naked)
	}
}

// TestPipeline_ShutdownWaitsForSlowAck: Run does not return before the
// settler has acked what was delivered, however slow the Ack.
func TestPipeline_ShutdownWaitsForSlowAck(t *testing.T) {
	src := &slowAckSource{fakeSource: newFakeSource(`{"a":1}`), entered: make(chan struct{}), release: make(chan struct{})}
	p := pipeline.New(src, &fakeDLQ{}, process.Validator{}, &gateSink{}, opts(nil))
	stop := start(t, p)
	<-src.entered
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Run returned %v while an Ack was still in progress", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(src.release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if _, acked, naked := src.counts(); acked != 1 || naked != 0 {
		t.Fatalf("acked %d naked %d, want 1 and 0", acked, naked)
	}
}

// limitSink is a gateSink that refuses, as the acked sink does when a
// message exceeds the drainer's frame limits, any Send holding a message of
// more than max records.
type limitSink struct {
	gateSink
	max int

	mu       sync.Mutex
	rejected []string // guarded by mu; the messages of each refused Send
}

func (k *limitSink) Send(ctx context.Context, recs []record.Record, done func(error)) error {
	n := map[record.MsgID]int{}
	var order []uint64
	for _, r := range recs {
		if n[r.ID.Msg()] == 0 {
			order = append(order, r.ID.Seq)
		}
		n[r.ID.Msg()]++
	}
	for id, c := range n {
		if c > k.max {
			k.mu.Lock()
			k.rejected = append(k.rejected, fmt.Sprint(order))
			k.mu.Unlock()
			return fmt.Errorf("message %s/%d: %d records, at most %d per frame: %w", id.Stream, id.Seq, c, k.max, pipeline.ErrTooLarge)
		}
	}
	return k.gateSink.Send(ctx, recs, done)
}

func lines(msg, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "{\"m\":%d,\"i\":%d}\n", msg, i)
	}
	return b.String()
}

// TestPipeline_TooLargeMessageIsDeadLetteredOnce: a message that cannot fit
// in one frame is dead-lettered whole, once, counted, and acked; the other
// messages of its chunk are delivered; nothing is retried for ever.
func TestPipeline_TooLargeMessageIsDeadLetteredOnce(t *testing.T) {
	// Message 1 is fetched alone (the first fetch takes one message) and is
	// too large; messages 2, 3 and 4 make one chunk, of which 3 is too large.
	src := newFakeSource(lines(1, 10), lines(2, 1), lines(3, 10), lines(4, 2))
	dlq := &fakeDLQ{}
	snk := &limitSink{max: 5}
	reg := prometheus.NewRegistry()
	o := opts(reg)
	o.ChunkRecords = 100
	p := pipeline.New(src, dlq, process.Validator{}, snk, o)
	stop := start(t, p)
	waitFor(t, "every message acked", func() bool { _, a, _ := src.counts(); return a == 4 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	fetched, acked, naked := src.counts()
	if fetched != 4 || acked != 4 || naked != 0 {
		t.Fatalf("fetched %d acked %d naked %d; want each of the 4 messages fetched and acked once, none nak'ed", fetched, acked, naked)
	}
	for seq, n := range src.acked {
		if n != 1 {
			t.Errorf("message %d acked %d times", seq, n)
		}
	}
	var got []string
	for _, r := range snk.delivered() {
		got = append(got, fmt.Sprintf("%d/%d", r.ID.Seq, r.ID.Index))
	}
	sort.Strings(got)
	if want := "2/0,4/0,4/1"; strings.Join(got, ",") != want {
		t.Fatalf("delivered %v, want %s (the messages that fit)", got, want)
	}
	sort.Strings(dlq.got)
	if len(dlq.got) != 2 {
		t.Fatalf("dead letters %q, want messages 1 and 3, whole", dlq.got)
	}
	for i, seq := range []int{1, 3} {
		want := fmt.Sprintf("%d/-1 %s: ", seq, lines(seq, 10))
		if !strings.HasPrefix(dlq.got[i], want) {
			t.Errorf("dead letter %q, want it to begin with %q (the whole payload, index -1)", dlq.got[i], want)
		}
		reason := strings.TrimPrefix(dlq.got[i], want)
		for _, s := range []string{"10 records", fmt.Sprintf("%d bytes", len(lines(seq, 10))), "the drainer's limits", "at most 5 per frame"} {
			if !strings.Contains(reason, s) {
				t.Errorf("reason %q does not say %q", reason, s)
			}
		}
	}
	// Message 1 once; the chunk [2 3 4] once, then 3 alone once: never more.
	snk.mu.Lock()
	rejected := strings.Join(snk.rejected, " ")
	snk.mu.Unlock()
	if rejected != "[1] [2 3 4] [3]" && rejected != "[2 3 4] [3] [1]" && rejected != "[2 3 4] [1] [3]" {
		t.Fatalf("refused Sends %s, want [1], [2 3 4] and [3], each once", rejected)
	}
	if got := testutil.ToFloat64(p2c(t, reg, "sluice_pipeline_messages_too_large_total")); got != 2 {
		t.Fatalf("messages_too_large_total = %v, want 2", got)
	}
	if r, b := p.Inflight(); r != 0 || b != 0 {
		t.Fatalf("in flight after shutdown: %d records %d bytes; the budget was not released exactly", r, b)
	}
}

// TestPipeline_TooLargeWithoutDeadLetterIsNaked: when the dead letter
// fails, the message is handed back, never acked.
func TestPipeline_TooLargeWithoutDeadLetterIsNaked(t *testing.T) {
	src := newFakeSource(lines(1, 10))
	snk := &limitSink{max: 5}
	p := pipeline.New(src, &fakeDLQ{fail: true}, process.Validator{}, snk, opts(nil))
	stop := start(t, p)
	waitFor(t, "nak", func() bool { _, _, n := src.counts(); return n >= 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, acked, _ := src.counts(); acked != 0 {
		t.Fatal("a too-large message was acked although its dead letter was not accepted")
	}
}

func TestOptions_WithDefaults(t *testing.T) {
	d := pipeline.Options{}.WithDefaults()
	if d.Workers != runtime.NumCPU() || d.BatchSize != 500 || d.FetchWait != 200*time.Millisecond ||
		d.MaxInflightRecords != 50000 || d.MaxInflightBytes != 16<<20 || d.ChunkRecords != 1024 ||
		d.ShutdownTimeout != 10*time.Second || d.MaxDeliver != 10 || d.Logger != slog.Default() || d.Registerer == nil {
		t.Fatalf("Options{}.WithDefaults() = %+v, want the defaults documented on Options", d)
	}
	set := pipeline.Options{Workers: 3, BatchSize: 7, FetchWait: time.Second, MaxInflightRecords: 9, MaxInflightBytes: 11,
		ChunkRecords: 13, ShutdownTimeout: time.Minute, MaxDeliver: 15}
	got := set.WithDefaults()
	got.Logger, got.Registerer = nil, nil
	if got != set {
		t.Fatalf("WithDefaults changed set fields: %+v, want %+v", got, set)
	}
}
