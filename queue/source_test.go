package queue_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/queue"
)

func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		if h := m.GetHistogram(); h != nil {
			return float64(h.GetSampleCount())
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestSource_FetchAck(t *testing.T) {
	e := newEnv(t, nil)
	const n = 2000
	publish(t, e.js, 0, n)

	got := fetchN(t, e.src, n, true)
	seen := map[uint64]bool{}
	for _, m := range got {
		if seen[m.ID().Seq] {
			t.Fatalf("seq %d fetched twice", m.ID().Seq)
		}
		seen[m.ID().Seq] = true
		if m.ID().Stream != "INGEST" || m.Subject() != "ingest.test" {
			t.Fatalf("seq %d: stream %q subject %q, want INGEST ingest.test", m.ID().Seq, m.ID().Stream, m.Subject())
		}
		if want := string(payload(int(m.ID().Seq - 1))); string(m.Data()) != want {
			t.Fatalf("seq %d: data %q, want %q", m.ID().Seq, m.Data(), want)
		}
		if m.NumDelivered() != 1 {
			t.Fatalf("seq %d delivered %d times, want 1", m.ID().Seq, m.NumDelivered())
		}
	}
	if len(seen) != n {
		t.Fatalf("got %d distinct messages, want %d", len(seen), n)
	}
	// Acks are asynchronous: wait until the server has them all, then make
	// sure nothing comes back.
	cons, err := e.js.Consumer(context.Background(), "INGEST", "sluice")
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, stallGuard, func() error {
		ci, err := cons.Info(context.Background())
		if err != nil {
			return err
		}
		if ci.NumAckPending != 0 || ci.AckFloor.Stream != n {
			return fmt.Errorf("consumer: %d ack pending, ack floor %d; want 0 and %d", ci.NumAckPending, ci.AckFloor.Stream, n)
		}
		return nil
	})
	expectEmpty(t, e.src, 300*time.Millisecond)

	for name, want := range map[string]float64{
		"sluice_queue_messages_fetched_total": n,
		"sluice_queue_acks_total":             n,
		"sluice_queue_naks_total":             0,
		"sluice_queue_fetch_errors_total":     0,
	} {
		if got := metric(t, e.reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if metric(t, e.reg, "sluice_queue_fetch_wait_seconds") == 0 {
		t.Error("sluice_queue_fetch_wait_seconds has no observations")
	}
}

func TestSource_FetchReturnsWithoutFullBatch(t *testing.T) {
	e := newEnv(t, nil)
	publish(t, e.js, 0, 3)
	type res struct {
		msgs []pipeline.Message
		err  error
	}
	done := make(chan res, 1)
	go func() {
		// A wait far longer than the guard: only returning on the first
		// messages lets this finish in time.
		msgs, err := e.src.Fetch(context.Background(), 100, time.Minute)
		done <- res{msgs, err}
	}()
	select {
	case r := <-done:
		if r.err != nil || len(r.msgs) == 0 {
			t.Fatalf("Fetch = %d messages, %v; want some, nil", len(r.msgs), r.err)
		}
		rest := fetchN(t, e.src, 3-len(r.msgs), true)
		if err := e.src.Ack(r.msgs); err != nil {
			t.Fatal(err)
		}
		if len(r.msgs)+len(rest) != 3 {
			t.Fatalf("got %d messages, want 3", len(r.msgs)+len(rest))
		}
	case <-time.After(stallGuard):
		t.Fatal("Fetch waited for a full batch instead of returning the messages it had")
	}
}

func TestSource_FetchContext(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := e.src.Fetch(ctx, 10, time.Minute)
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Fetch after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(stallGuard):
		t.Fatal("Fetch ignored its context")
	}
	// The abandoned pull does not lose messages: they are fetched next.
	publish(t, e.js, 0, 5)
	if got := fetchN(t, e.src, 5, true); len(got) != 5 {
		t.Fatalf("got %d, want 5", len(got))
	}
}

func TestSource_Redelivery(t *testing.T) {
	t.Run("nak", func(t *testing.T) {
		e := newEnv(t, nil)
		publish(t, e.js, 0, 1)
		first := fetchN(t, e.src, 1, false)
		if err := e.src.Nak(asPipeline(first)); err != nil {
			t.Fatal(err)
		}
		again := fetchN(t, e.src, 1, true)
		if again[0].ID().Seq != first[0].ID().Seq || again[0].NumDelivered() != 2 {
			t.Fatalf("after nak got seq %d delivered %d times; want seq %d delivered 2 times", again[0].ID().Seq, again[0].NumDelivered(), first[0].ID().Seq)
		}
		if got := metric(t, e.reg, "sluice_queue_naks_total"); got != 1 {
			t.Fatalf("naks metric = %v, want 1", got)
		}
	})
	t.Run("ack wait", func(t *testing.T) {
		e := newEnv(t, func(c *queue.Options) { c.AckWait = time.Second })
		publish(t, e.js, 0, 1)
		first := fetchN(t, e.src, 1, false)
		again := fetchN(t, e.src, 1, true) // polls until the ack wait passes
		if again[0].ID().Seq != first[0].ID().Seq || again[0].NumDelivered() != 2 {
			t.Fatalf("after ack wait got seq %d delivered %d times; want seq %d delivered 2 times", again[0].ID().Seq, again[0].NumDelivered(), first[0].ID().Seq)
		}
	})
}

func TestSource_DeadLetter(t *testing.T) {
	e := newEnv(t, nil)
	publish(t, e.js, 0, 1)
	m := fetchN(t, e.src, 1, false)[0]
	ctx := context.Background()
	rec := []byte(`{"bad":`)
	reason := "parse: unexpected end of JSON\ninput"
	if err := e.src.DeadLetter(ctx, m, 7, rec, reason); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	// The same record again (as after a redelivery) is stored once.
	if err := e.src.DeadLetter(ctx, m, 7, rec, reason); err != nil {
		t.Fatalf("DeadLetter again: %v", err)
	}
	if err := e.src.Ack([]pipeline.Message{m}); err != nil {
		t.Fatal(err)
	}

	dlq, err := e.js.Stream(ctx, "DLQ")
	if err != nil {
		t.Fatal(err)
	}
	if n := dlq.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("DLQ holds %d messages, want 1", n)
	}
	sm, err := dlq.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if sm.Subject != "dlq.ingest" || string(sm.Data) != string(rec) {
		t.Fatalf("dead letter: subject %q data %q", sm.Subject, sm.Data)
	}
	for k, want := range map[string]string{
		queue.HeaderReason:        "parse: unexpected end of JSON input",
		queue.HeaderSourceStream:  "INGEST",
		queue.HeaderSourceSubject: "ingest.test",
		queue.HeaderSourceSeq:     fmt.Sprint(m.ID().Seq),
		queue.HeaderSourceEpoch:   fmt.Sprint(m.ID().Epoch),
		queue.HeaderRecordIndex:   "7",
	} {
		if got := sm.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	in, err := e.js.Stream(ctx, "INGEST")
	if err != nil {
		t.Fatal(err)
	}
	if n := in.CachedInfo().State.LastSeq; n != 1 {
		t.Fatalf("INGEST's last sequence is %d, want only the original message's 1 (no dead letter in it)", n)
	}
	expectEmpty(t, e.src, 300*time.Millisecond)
	if got := metric(t, e.reg, "sluice_queue_dead_letters_total"); got != 2 {
		t.Fatalf("dead letters metric = %v, want 2", got)
	}
}

// TestSource_NoStall: bursts separated by idle gaps, each longer than a pull
// expiry, are each consumed long before a 30 s pull expiry could pass.
func TestSource_NoStall(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	consumed := make(chan int, 1024)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(consumed)
		for {
			msgs, err := e.src.Fetch(ctx, 500, 200*time.Millisecond)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				t.Errorf("Fetch: %v", err)
				return
			}
			if err := e.src.Ack(msgs); err != nil {
				t.Errorf("Ack: %v", err)
				return
			}
			if len(msgs) > 0 {
				consumed <- len(msgs)
			}
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	gaps := []time.Duration{0, 250 * time.Millisecond, 700 * time.Millisecond, 50 * time.Millisecond, 1200 * time.Millisecond, 450 * time.Millisecond}
	const burst = 1500
	total := 0
	for i, gap := range gaps {
		// The idle gap is the scenario, not synchronisation: pulls expire
		// during it with nothing to deliver.
		<-time.After(gap)
		publish(t, e.js, total, burst)
		want := total + burst
		guard := time.After(stallGuard)
		for total < want {
			select {
			case n, ok := <-consumed:
				if !ok {
					t.Fatalf("fetch loop ended during burst %d", i)
				}
				total += n
			case <-guard:
				t.Fatalf("burst %d after a %s idle gap: consumption stalled at %d of %d messages", i, gap, total, want)
			}
		}
		if total != want {
			t.Fatalf("burst %d: consumed %d, want %d", i, total, want)
		}
	}
}

func TestSource_SharedConsumer(t *testing.T) {
	emb := startServer(t, testConfig(t))
	ncA, ncB := connect(t, emb), connect(t, emb)
	srcA := openSource(t, ncA, queue.Options{}, nil)
	srcB := openSource(t, ncB, queue.Options{}, nil)
	js, err := jetstream.New(ncA)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("disjoint batches", func(t *testing.T) {
		publish(t, js, 0, 30)
		a := fetchN(t, srcA, 10, true) // A holds one prefetched batch more
		b := fetchN(t, srcB, 10, true)
		inA := map[uint64]bool{}
		for _, m := range a {
			inA[m.ID().Seq] = true
		}
		for _, m := range b {
			if inA[m.ID().Seq] {
				t.Fatalf("seq %d delivered to both sources", m.ID().Seq)
			}
		}
		// Whatever A still had buffered goes back to the consumer on
		// Close, and B gets it.
		if err := srcA.Close(); err != nil {
			t.Fatal(err)
		}
		rest := fetchN(t, srcB, 10, true)
		seen := map[uint64]int{}
		for _, m := range append(append(a, b...), rest...) {
			seen[m.ID().Seq]++
		}
		for seq := uint64(1); seq <= 30; seq++ {
			if seen[seq] != 1 {
				t.Fatalf("seq %d consumed %d times, want once (all: %v)", seq, seen[seq], seen)
			}
		}
		expectEmpty(t, srcB, 300*time.Millisecond)
	})

	t.Run("concurrent", func(t *testing.T) {
		srcA := openSource(t, ncA, queue.Options{}, nil) // the first one is closed
		const n = 6000
		var (
			mu   sync.Mutex
			seen = map[uint64]int{}
			per  [2]int
		)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for i, src := range []*queue.Source{srcA, srcB} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					msgs, err := src.Fetch(ctx, 200, 100*time.Millisecond)
					if err != nil {
						if ctx.Err() == nil {
							t.Errorf("source %d: Fetch: %v", i, err)
						}
						return
					}
					if err := src.Ack(msgs); err != nil {
						t.Errorf("source %d: Ack: %v", i, err)
						return
					}
					mu.Lock()
					for _, m := range msgs {
						seen[m.ID().Seq]++
					}
					per[i] += len(msgs)
					mu.Unlock()
				}
			}()
		}
		for i := 0; i < 6; i++ {
			publish(t, js, 30+i*n/6, n/6)
		}
		testkit.WaitFor(t, stallGuard, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(seen) < n {
				return fmt.Errorf("consumed %d distinct of %d", len(seen), n)
			}
			return nil
		})
		cancel()
		wg.Wait()
		for seq := uint64(31); seq <= 30+n; seq++ {
			if seen[seq] != 1 {
				t.Fatalf("seq %d consumed %d times, want once", seq, seen[seq])
			}
		}
		if len(seen) != n {
			t.Fatalf("consumed %d distinct messages, want %d", len(seen), n)
		}
		t.Logf("source A took %d, source B %d", per[0], per[1])
	})
}

func TestEmbedded_RestartKeepsUnacked(t *testing.T) {
	eo := testConfig(t)
	cfg := queue.Options{AckWait: time.Second, Logger: quietLogger()}
	emb, err := queue.StartEmbedded(eo)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := queue.Connect(context.Background(), emb, queue.ConnectOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	src, err := queue.Open(context.Background(), nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, js, 0, 10)
	got := fetchN(t, src, 10, false)
	acked := map[uint64]bool{}
	for _, m := range got[:4] {
		acked[m.ID().Seq] = true
	}
	if err := src.Ack(asPipeline(got[:4])); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the acks reach the server before it stops
		t.Fatal(err)
	}
	_ = src.Close()
	nc.Close()
	emb.Shutdown()

	// Same data directory, a new server (and port).
	e := newEnvAt(t, eo, func(c *queue.Options) { *c = cfg })
	again := fetchN(t, e.src, 6, true)
	for _, m := range again {
		if acked[m.ID().Seq] {
			t.Fatalf("acked seq %d came back after restart", m.ID().Seq)
		}
		// The same incarnation of the stream: a drainer's dedup state
		// still applies to it.
		if m.ID().Epoch != got[0].ID().Epoch || m.ID().Epoch == 0 {
			t.Fatalf("seq %d: epoch %d after restart, %d before; want the same, not 0", m.ID().Seq, m.ID().Epoch, got[0].ID().Epoch)
		}
	}
	expectEmpty(t, e.src, 300*time.Millisecond)
}

func TestOpen_ConfigErrors(t *testing.T) {
	emb := startServer(t, testConfig(t))
	nc := connect(t, emb)
	ctx := context.Background()
	cfg := queue.Options{Logger: quietLogger()}
	for _, tc := range []struct {
		name  string
		tweak func(*queue.Options)
		is    error
		want  []string
	}{
		{
			name:  "dead letters inside consumed subjects",
			tweak: func(c *queue.Options) { c.Subjects = []string{"ingest.>"}; c.DeadLetterSubject = "ingest.dlq" },
			is:    queue.ErrDeadLetterConsumed,
			want:  []string{`queue.dead_letter_subject "ingest.dlq"`, `"ingest.>"`},
		},
		{
			name:  "dead letters caught by a star",
			tweak: func(c *queue.Options) { c.Subjects = []string{"a.*"}; c.DeadLetterSubject = "a.dead" },
			is:    queue.ErrDeadLetterConsumed,
			want:  []string{`"a.dead"`, `"a.*"`},
		},
		{
			name:  "wildcard dead-letter subject",
			tweak: func(c *queue.Options) { c.DeadLetterSubject = "dlq.*" },
			is:    queue.ErrBadConfig,
			want:  []string{"queue.dead_letter_subject", "without wildcards"},
		},
		{
			name:  "same stream for dead letters",
			tweak: func(c *queue.Options) { c.DeadLetterStream = "INGEST" },
			is:    queue.ErrBadConfig,
			want:  []string{"queue.dead_letter_stream"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			tc.tweak(&c)
			_, err := queue.Open(ctx, nc, c)
			if !errors.Is(err, tc.is) {
				t.Fatalf("Open = %v, want %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
		})
	}

	t.Run("existing stream with other subjects", func(t *testing.T) {
		src, err := queue.Open(ctx, nc, cfg)
		if err != nil {
			t.Fatal(err)
		}
		_ = src.Close()
		c := cfg
		c.Subjects = []string{"events.>"}
		_, err = queue.Open(ctx, nc, c)
		if !errors.Is(err, queue.ErrStreamMismatch) {
			t.Fatalf("Open = %v, want ErrStreamMismatch", err)
		}
		for _, w := range []string{`"INGEST"`, "ingest.>", "events.>", "queue.subjects"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %s", err, w)
			}
		}
		// The stream was left alone.
		js, _ := jetstream.New(nc)
		st, err := js.Stream(ctx, "INGEST")
		if err != nil {
			t.Fatal(err)
		}
		if s := st.CachedInfo().Config.Subjects; len(s) != 1 || s[0] != "ingest.>" {
			t.Fatalf("stream subjects changed to %v", s)
		}
	})
}

func TestSource_Faults(t *testing.T) {
	set := func(t *testing.T, name string, a *fault.Action) {
		p, ok := fault.Lookup(name)
		if !ok {
			t.Fatalf("fault point %s not registered", name)
		}
		p.Set(a)
		t.Cleanup(func() { p.Set(nil) })
	}
	t.Run("fetch error", func(t *testing.T) {
		e := newEnv(t, nil)
		publish(t, e.js, 0, 5)
		set(t, "queue.fetch", &fault.Action{Kind: fault.Error, Count: 1})
		_, err := e.src.Fetch(context.Background(), 10, time.Second)
		if !errors.Is(err, queue.ErrFetch) || !errors.Is(err, fault.ErrInjected) {
			t.Fatalf("Fetch = %v, want a transient ErrFetch from the injected fault", err)
		}
		if got := metric(t, e.reg, "sluice_queue_fetch_errors_total"); got != 1 {
			t.Fatalf("fetch errors metric = %v, want 1", got)
		}
		if got := fetchN(t, e.src, 5, true); len(got) != 5 {
			t.Fatalf("after the fault got %d, want 5", len(got))
		}
	})
	t.Run("ack before", func(t *testing.T) {
		e := newEnv(t, func(c *queue.Options) { c.AckWait = time.Second })
		publish(t, e.js, 0, 3)
		got := fetchN(t, e.src, 3, false)
		set(t, "queue.ack.before", &fault.Action{Kind: fault.Error, Count: 1})
		if err := e.src.Ack(asPipeline(got)); !errors.Is(err, fault.ErrInjected) {
			t.Fatalf("Ack = %v, want the injected error", err)
		}
		if n := metric(t, e.reg, "sluice_queue_acks_total"); n != 0 {
			t.Fatalf("acks metric = %v after a failed ack, want 0", n)
		}
		again := fetchN(t, e.src, 3, true) // not acked: redelivered
		for _, m := range again {
			if m.NumDelivered() != 2 {
				t.Fatalf("seq %d delivered %d times, want 2", m.ID().Seq, m.NumDelivered())
			}
		}
	})
}

// TestSource_StateMetrics: the reconnect count is read from the client
// at scrape time, and the backlog collector reports messages not yet
// delivered as pending and delivered, unacknowledged ones as ack-pending.
func TestSource_StateMetrics(t *testing.T) {
	e := newEnv(t, func(o *queue.Options) { o.DisablePrefetch = true })
	if err := e.reg.Register(e.src.BacklogCollector()); err != nil {
		t.Fatal(err)
	}
	gauge := func(name string) (float64, bool) {
		t.Helper()
		mfs, err := e.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				m := mf.GetMetric()[0]
				return m.GetGauge().GetValue() + m.GetCounter().GetValue(), true
			}
		}
		return 0, false
	}
	want := func(name string, v float64) {
		t.Helper()
		testkit.WaitFor(t, 10*time.Second, func() error { // the backlog is read at most once a second
			if got, ok := gauge(name); !ok || got != v {
				return fmt.Errorf("%s = %v (present %v), want %v", name, got, ok, v)
			}
			return nil
		})
	}
	publish(t, e.js, 0, 5)
	want("sluice_queue_connected", 1)
	want("sluice_queue_reconnects_total", 0)
	want("sluice_queue_pending_messages", 5)
	want("sluice_queue_ack_pending", 0)
	got := fetchN(t, e.src, 2, false)
	want("sluice_queue_ack_pending", 2)
	want("sluice_queue_pending_messages", 3)
	if err := e.src.Ack(asPipeline(got)); err != nil {
		t.Fatal(err)
	}
	want("sluice_queue_ack_pending", 0)
}

// A trickle of messages does not hold a batch open until it is full: the
// batch ends once Options.Linger has passed since its first message. The
// pause that ends a batch is made an hour here, so that only the linger
// can end it before it is full (the publisher, waiting for each PubAck,
// needs far longer than the linger for max messages).
func TestSource_TrickleEndsBatchAtLinger(t *testing.T) {
	e := newEnv(t, func(o *queue.Options) { o.Linger = 20 * time.Millisecond })
	queue.SetLingerGap(e.src, time.Hour)
	const max = 4000
	stop := make(chan struct{})
	fed := make(chan int, 1)
	go func() {
		// One message after another, each waiting for its PubAck,
		// bounded by max and by stop.
		n := 0
		defer func() { fed <- n }()
		for ; n < max; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.js.Publish(context.Background(), "ingest.test", payload(n)); err != nil {
				return
			}
		}
	}()
	msgs, err := e.src.Fetch(context.Background(), max, time.Minute)
	close(stop)
	n := <-fed
	if err != nil || len(msgs) == 0 {
		t.Fatalf("Fetch = %d messages, %v; want some, nil", len(msgs), err)
	}
	if len(msgs) >= max {
		t.Fatalf("Fetch took all %d messages of the trickle (%d fed): the batch stayed open past the linger", len(msgs), n)
	}
	if err := e.src.Ack(msgs); err != nil {
		t.Fatal(err)
	}
}
