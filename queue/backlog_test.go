package queue_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/queue"
)

func TestSource_Backlog(t *testing.T) {
	e := newEnv(t, func(o *queue.Options) { o.DisablePrefetch = true })
	ctx := context.Background()
	b, err := e.src.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b.Stream != "INGEST" || b.Pending != 0 || b.AckPending != 0 || b.Stored != 0 || !b.Oldest.IsZero() || b.OldestAge() != 0 {
		t.Fatalf("empty stream: backlog %+v", b)
	}

	publish(t, e.js, 0, 10)
	got := fetchN(t, e.src, 4, false)
	if err := e.src.Ack([]pipeline.Message{got[0]}); err != nil {
		t.Fatal(err)
	}
	nakked := got[1]
	if err := e.src.Nak([]pipeline.Message{nakked}); err != nil {
		t.Fatal(err)
	}
	// Take the nak'ed message again (after the nak delay), acking the
	// others the fetches hand out meanwhile.
	acked := 1
	for again := false; !again; {
		for _, m := range fetchN(t, e.src, 1, false) {
			if m.ID() == nakked.ID() {
				again = true
				continue
			}
			if err := e.src.Ack([]pipeline.Message{m}); err != nil {
				t.Fatal(err)
			}
			acked++
		}
	}
	// JetStream applies acks asynchronously; poll until it counts them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err = e.src.Backlog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if b.Stored == uint64(10-acked) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if b.Stored != uint64(10-acked) || b.AckPending != 3 || b.Redelivered != 1 || b.Pending != uint64(10-acked-3) || b.LastSeq != 10 {
		t.Fatalf("after 10 published, %d acked, 3 delivered and unacked (1 of them twice): backlog %+v", acked, b)
	}
	if b.Oldest.IsZero() || b.OldestAge() <= 0 || b.OldestAge() > time.Minute {
		t.Fatalf("oldest %v (age %v), want the time the first unacked message was stored", b.Oldest, b.OldestAge())
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(e.src.BacklogCollector())
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 7 {
		t.Fatalf("collector: %d samples, err %v; want 7", n, err)
	}
	want := `
# HELP sluice_queue_ack_pending Queue messages delivered and not yet acknowledged (the consumer's num_ack_pending): in flight, or waiting for their ack wait to be redelivered.
# TYPE sluice_queue_ack_pending gauge
sluice_queue_ack_pending 3
# HELP sluice_queue_consumer_redelivered_messages Unacknowledged queue messages that were delivered more than once (the consumer's num_redelivered).
# TYPE sluice_queue_consumer_redelivered_messages gauge
sluice_queue_consumer_redelivered_messages 1
# HELP sluice_queue_connected 1 while sluice is connected to the queue's NATS server, else 0.
# TYPE sluice_queue_connected gauge
sluice_queue_connected 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sluice_queue_ack_pending", "sluice_queue_consumer_redelivered_messages", "sluice_queue_connected"); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	e.src = openSourceLogged(t, e, &logs)
	if _, err := e.src.LogBacklog(ctx); err != nil {
		t.Fatal(err)
	}
	line := logs.String()
	for _, w := range []string{`msg="backlog at start"`, " ack_pending=3 ", " redelivered=1 ", " stored=", " oldest_unacked_age=", " last_seq=10 ", " ack_wait="} {
		if !strings.Contains(line, w) {
			t.Errorf("start line lacks %q:\n%s", w, line)
		}
	}
}

// openSourceLogged opens a second Source on e's stream that logs to w.
func openSourceLogged(t *testing.T, e *env, w *bytes.Buffer) *queue.Source {
	t.Helper()
	opts := e.cfg
	opts.Logger, opts.Registerer = newTextLogger(w), prometheus.NewRegistry()
	src, err := queue.Open(context.Background(), e.nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return src
}
