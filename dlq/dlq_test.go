package dlq_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/dlq"
	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/queue"
)

// setup starts an embedded JetStream with sluice's streams, publishes
// three messages and dead-letters them through the queue's Source, as
// the pipeline does.
func setup(t *testing.T) (jetstream.JetStream, *queue.Source) {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	emb, err := queue.StartEmbedded(queue.EmbeddedOptions{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, err := queue.Connect(ctx, emb, queue.ConnectOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	src, err := queue.Open(ctx, nc, queue.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"{\"a\":\"\xff\"}", "{\"amount\":1}\n{\"amount\":-1}", `{"big":1}`} {
		if _, err := js.Publish(ctx, "ingest.dlq", []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	var msgs []pipeline.Message
	for len(msgs) < 3 {
		got, err := src.Fetch(ctx, 3-len(msgs), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, got...)
	}
	for _, d := range []struct {
		m   pipeline.Message
		idx int
		rec string
		why pipeline.Rejection
	}{
		{msgs[0], 0, "{\"a\":\"\xff\"}", pipeline.Rejection{Reason: "invalid_utf8", Step: -1, Rule: "invalid_utf8", Offset: 6, Msg: "invalid UTF-8 byte 0xff inside a string"}},
		{msgs[1], 1, `{"amount":-1}`, pipeline.Rejection{Reason: "rejected", Step: 4, Rule: "reject", Offset: -1, Msg: "negative amount"}},
		{msgs[2], -1, `{"big":1}`, pipeline.Rejection{Reason: "too_large", Step: -1, Rule: "too_large", Offset: -1, Msg: "does not fit in one frame"}},
	} {
		if err := src.DeadLetterRejection(ctx, d.m, d.idx, []byte(d.rec), &d.why); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.Ack(msgs); err != nil {
		t.Fatal(err)
	}
	return js, src
}

func list(t *testing.T, js jetstream.JetStream, f dlq.Filter) []dlq.Letter {
	t.Helper()
	var out []dlq.Letter
	if err := dlq.List(context.Background(), js, "DLQ", f, func(l dlq.Letter) error { out = append(out, l); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestList(t *testing.T) {
	js, _ := setup(t)
	all := list(t, js, dlq.Filter{})
	if len(all) != 3 {
		t.Fatalf("listed %d dead letters, want 3", len(all))
	}
	l := all[1]
	if l.Code != "rejected" || l.Rule != "reject" || l.Step != 4 || l.Offset != -1 || l.Subject != "ingest.dlq" ||
		l.Stream != "INGEST" || l.SourceSeq != 2 || l.Index != 1 || string(l.Data) != `{"amount":-1}` ||
		l.Reason != "step 4 (reject): negative amount" || l.Origin() != "INGEST:2:1" {
		t.Fatalf("letter = %+v", l)
	}
	if o := all[2].Origin(); o != "INGEST:3" || all[2].Index != -1 {
		t.Fatalf("whole-message letter origin %q, index %d", o, all[2].Index)
	}
	if all[0].Offset != 6 || all[0].Step != -1 {
		t.Fatalf("gate letter = %+v", all[0])
	}
	for _, tc := range []struct {
		f    dlq.Filter
		want int
	}{
		{dlq.Filter{Reason: "rejected"}, 1},
		{dlq.Filter{Reason: "UTF-8"}, 1}, // a substring of the reason
		{dlq.Filter{Reason: "nothing like it"}, 0},
		{dlq.Filter{Since: time.Now().Add(time.Hour)}, 0},
		{dlq.Filter{Since: time.Now().Add(-time.Hour)}, 3},
	} {
		if got := len(list(t, js, tc.f)); got != tc.want {
			t.Errorf("List(%+v) = %d letters, want %d", tc.f, got, tc.want)
		}
	}
}

func TestReplay(t *testing.T) {
	js, src := setup(t)
	ctx := context.Background()
	n, err := dlq.Replay(ctx, js, "DLQ", dlq.Filter{Reason: "rejected"})
	if err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v; want 1 replayed", n, err)
	}
	// The copy is in the input stream, on its original subject, for the
	// pipeline to fetch again; the others stay dead letters.
	got, err := src.Fetch(ctx, 10, 2*time.Second)
	if err != nil || len(got) != 1 || string(got[0].Data()) != `{"amount":-1}` || got[0].Subject() != "ingest.dlq" {
		t.Fatalf("fetched %d messages after replay (%v)", len(got), err)
	}
	if left := list(t, js, dlq.Filter{}); len(left) != 2 || left[0].Code != "invalid_utf8" || left[1].Code != "too_large" {
		t.Fatalf("left in the DLQ: %+v", left)
	}
	// Nothing more matches: a second replay does nothing.
	if n, err := dlq.Replay(ctx, js, "DLQ", dlq.Filter{Reason: "rejected"}); err != nil || n != 0 {
		t.Fatalf("second Replay = %d, %v", n, err)
	}
}
