package queue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/queue"
)

// errCodeStoreFailed is JetStream's error code for a message it could not
// store, here because the stream is full ("maximum bytes exceeded").
const errCodeStoreFailed jetstream.ErrorCode = 10077

// streamState reads a stream's state from the server.
func streamState(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamState {
	t.Helper()
	st, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State
}

// waitEmpty waits until the stream holds no message.
func waitEmpty(t *testing.T, js jetstream.JetStream, name string) {
	t.Helper()
	testkit.WaitFor(t, stallGuard, func() error {
		if s := streamState(t, js, name); s.Msgs != 0 || s.Bytes != 0 {
			return fmt.Errorf("stream %s still holds %d messages, %d bytes", name, s.Msgs, s.Bytes)
		}
		return nil
	})
}

// TestSource_AckedLeaveStream: acknowledged messages leave the stream, and
// an emptied stream keeps its sequence and epoch across a server restart,
// so a drainer's dedup state for it stays valid.
func TestSource_AckedLeaveStream(t *testing.T) {
	eo := testConfig(t)
	e := newEnvAt(t, eo, nil)
	const n = 50
	publish(t, e.js, 0, n)
	if s := streamState(t, e.js, "INGEST"); s.Msgs != n {
		t.Fatalf("stream holds %d messages before consuming, want %d", s.Msgs, n)
	}
	got := fetchN(t, e.src, n, true)
	waitEmpty(t, e.js, "INGEST")
	epoch := got[0].ID().Epoch
	last, err := e.src.Last(context.Background())
	if err != nil || last.Seq != n || last.Epoch != epoch {
		t.Fatalf("Last of the emptied stream = %+v, %v; want seq %d, epoch %d", last, err, n, epoch)
	}

	_ = e.src.Close()
	e.nc.Close()
	e.emb.Shutdown()
	e2 := newEnvAt(t, eo, nil)
	publish(t, e2.js, n, 1)
	m := fetchN(t, e2.src, 1, true)[0]
	if m.ID().Seq != n+1 || m.ID().Epoch != epoch {
		t.Fatalf("after a restart with the stream empty, the next message is seq %d epoch %d; want seq %d epoch %d (numbering goes on in the same incarnation)", m.ID().Seq, m.ID().Epoch, n+1, epoch)
	}
	waitEmpty(t, e2.js, "INGEST")
}

// TestSource_FullStreamRefusesPublish: a stream at its byte limit refuses
// the next publish with an error (discard new), keeps every message it
// acknowledged, and accepts publishes again once they are consumed.
func TestSource_FullStreamRefusesPublish(t *testing.T) {
	e := newEnv(t, func(o *queue.Options) { o.MaxBytes = 4 << 10 })
	ctx := context.Background()
	rec := bytes.Repeat([]byte("x"), 200)
	var stored [][]byte
	var refused error
	for i := 0; i < 100 && refused == nil; i++ {
		data := fmt.Appendf(nil, `{"i":%d,"pad":%q}`, i, rec)
		if _, err := e.js.Publish(ctx, "ingest.test", data); err != nil {
			refused = err
			continue
		}
		stored = append(stored, data)
	}
	var apiErr *jetstream.APIError
	if !errors.As(refused, &apiErr) || apiErr.ErrorCode != errCodeStoreFailed || !strings.Contains(refused.Error(), "maximum bytes exceeded") {
		t.Fatalf("publishing into a 4KiB stream: %d stored, then error %v; want a refusal (maximum bytes exceeded)", len(stored), refused)
	}
	if len(stored) == 0 {
		t.Fatal("the stream refused the first message")
	}
	if s := streamState(t, e.js, "INGEST"); s.Msgs != uint64(len(stored)) || s.Bytes > 4<<10 {
		t.Fatalf("full stream holds %d messages in %d bytes; want the %d acknowledged ones within 4KiB", s.Msgs, s.Bytes, len(stored))
	}
	// Nothing acknowledged was dropped to make room.
	for i, m := range fetchN(t, e.src, len(stored), true) {
		if !bytes.Equal(m.Data(), stored[i]) {
			t.Fatalf("message %d is %.40q, want %.40q", i, m.Data(), stored[i])
		}
	}
	expectEmpty(t, e.src, 100*time.Millisecond)
	waitEmpty(t, e.js, "INGEST")
	if _, err := e.js.Publish(ctx, "ingest.test", stored[0]); err != nil {
		t.Fatalf("publish once the stream was consumed: %v", err)
	}
}

// TestSource_FullDeadLetterStream: a full dead-letter stream refuses a dead
// letter with an error (the caller does not ack the message), and keeps the
// ones it stored.
func TestSource_FullDeadLetterStream(t *testing.T) {
	e := newEnv(t, func(o *queue.Options) { o.DeadLetterMaxBytes = 2 << 10 })
	publish(t, e.js, 0, 1)
	m := fetchN(t, e.src, 1, false)[0]
	rec := bytes.Repeat([]byte("y"), 300)
	ctx := context.Background()
	var err error
	stored := 0
	for i := 0; i < 100 && err == nil; i++ {
		if err = e.src.DeadLetter(ctx, m, i, rec, "bad"); err == nil {
			stored++
		}
	}
	if err == nil || !strings.Contains(err.Error(), "maximum bytes exceeded") || !strings.Contains(err.Error(), `"DLQ"`) {
		t.Fatalf("dead letters into a 2KiB stream: %d stored, then %v; want a refusal naming the stream", stored, err)
	}
	if s := streamState(t, e.js, "DLQ"); s.Msgs != uint64(stored) || s.FirstSeq != 1 {
		t.Fatalf("full DLQ holds %d messages from seq %d; want the %d stored from 1", s.Msgs, s.FirstSeq, stored)
	}
	if err := e.src.Nak([]pipeline.Message{m}); err != nil {
		t.Fatal(err)
	}
}

// oldStreams creates the streams and consumer as sluice did before its
// streams had limits: limits retention, no byte or age bound.
func oldStreams(t *testing.T, js jetstream.JetStream) jetstream.Consumer {
	t.Helper()
	ctx := context.Background()
	for name, subj := range map[string]string{"INGEST": "ingest.>", "DLQ": "dlq.ingest"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Storage: jetstream.FileStorage}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := js.CreateOrUpdateConsumer(ctx, "INGEST", jetstream.ConsumerConfig{Durable: "sluice", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// consumeAll fetches and acks n messages with c, as the old version did.
func consumeAll(t *testing.T, nc *nats.Conn, c jetstream.Consumer, n int) {
	t.Helper()
	b, err := c.Fetch(n, jetstream.FetchMaxWait(stallGuard))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for m := range b.Messages() {
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
		got++
	}
	if got != n {
		t.Fatalf("consumed %d of %d messages (%v)", got, n, b.Error())
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, is error, words ...string) {
	t.Helper()
	if !errors.Is(err, is) {
		t.Fatalf("error %v, want %v", err, is)
	}
	contains(t, err, words...)
}

// contains checks that err's text mentions each of words.
func contains(t *testing.T, err error, words ...string) {
	t.Helper()
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %s", err, w)
		}
	}
}

// TestOpen_StreamFromEarlierVersion: a stream with other settings than the
// configured ones is refused with every difference and how to migrate;
// with Migrate, sluice updates the dead-letter stream in place and
// recreates the consumed one as a work queue, but only once it has been
// consumed completely, and never drops a message.
func TestOpen_StreamFromEarlierVersion(t *testing.T) {
	emb := startServer(t, testConfig(t))
	nc := connect(t, emb)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old := oldStreams(t, js)
	publish(t, js, 0, 3)
	if _, err := js.Publish(ctx, "dlq.ingest", []byte("an old dead letter")); err != nil {
		t.Fatal(err)
	}
	oldEpoch := streamEpoch(t, js, "INGEST")
	opts := queue.Options{Logger: quietLogger()}

	_, err = queue.Open(ctx, nc, opts)
	wantErr(t, err, queue.ErrStreamMismatch, `"INGEST"`, "retention limits, sluice needs workqueue", "queue.max_bytes none on the stream, 1GiB configured", "queue.migrate")
	if info, _ := js.Stream(ctx, "INGEST"); info.CachedInfo().Config.Retention != jetstream.LimitsPolicy || info.CachedInfo().State.Msgs != 3 {
		t.Fatal("the refused Open changed the stream")
	}

	opts.Migrate = true
	_, err = queue.Open(ctx, nc, opts)
	wantErr(t, err, queue.ErrStreamMismatch, `"INGEST"`, "3 messages not yet delivered", "stop the producers")
	st, err := js.Stream(ctx, "INGEST")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := st.CachedInfo().Config; cfg.Retention != jetstream.LimitsPolicy || len(cfg.Subjects) != 1 || cfg.Subjects[0] != "ingest.>" || st.CachedInfo().State.Msgs != 3 {
		t.Fatalf("a refused migration left the stream with retention %s, subjects %v, %d messages; want it as it was", cfg.Retention, cfg.Subjects, st.CachedInfo().State.Msgs)
	}
	// The old version consumes what is left (with the old consumer).
	consumeAll(t, nc, old, 3)

	src, err := queue.Open(ctx, nc, opts)
	if err != nil {
		t.Fatalf("Open with Migrate on a fully consumed old stream: %v", err)
	}
	defer src.Close()
	for name, want := range map[string]jetstream.StreamConfig{
		"INGEST": {Retention: jetstream.WorkQueuePolicy, MaxBytes: queue.DefaultMaxBytes, Discard: jetstream.DiscardNew},
		"DLQ":    {Retention: jetstream.LimitsPolicy, MaxBytes: queue.DefaultDeadLetterMaxBytes, MaxAge: queue.DefaultDeadLetterMaxAge, Discard: jetstream.DiscardNew},
	} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		got := st.CachedInfo().Config
		if got.Retention != want.Retention || got.MaxBytes != want.MaxBytes || got.MaxAge != want.MaxAge || got.Discard != want.Discard {
			t.Errorf("%s after migration: retention %s, max bytes %d, max age %s, discard %s; want %s, %d, %s, %s", name,
				got.Retention, got.MaxBytes, got.MaxAge, got.Discard, want.Retention, want.MaxBytes, want.MaxAge, want.Discard)
		}
	}
	if s := streamState(t, js, "DLQ"); s.Msgs != 1 {
		t.Fatalf("DLQ holds %d messages after its migration, want its 1", s.Msgs)
	}
	publish(t, js, 3, 1)
	m := fetchN(t, src, 1, true)[0]
	if m.ID().Seq != 1 || m.ID().Epoch == oldEpoch || m.ID().Epoch != streamEpoch(t, js, "INGEST") {
		t.Fatalf("first message after migration: seq %d epoch %d (old epoch %d); want seq 1 under the new stream's epoch", m.ID().Seq, m.ID().Epoch, oldEpoch)
	}
	waitEmpty(t, js, "INGEST")

	// Opening again with the same settings changes nothing.
	again, err := queue.Open(ctx, nc, queue.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Open again without Migrate: %v", err)
	}
	_ = again.Close()
}

// TestOpen_LimitsChanged: limits configured differently from the stream's
// are refused naming the key, migrated in place with Migrate, and never by
// dropping stored messages.
func TestOpen_LimitsChanged(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	publish(t, e.js, 0, 20)
	_ = e.src.Close()

	_, err := queue.Open(ctx, e.nc, queue.Options{MaxBytes: 2 << 30, MaxAge: time.Hour, Discard: queue.DiscardOld, Logger: quietLogger()})
	wantErr(t, err, queue.ErrStreamMismatch, "queue.max_bytes 1GiB on the stream, 2GiB configured", "queue.max_age none on the stream, 1h0m0s configured", "queue.discard new on the stream, old configured")

	_, err = queue.Open(ctx, e.nc, queue.Options{MaxBytes: 100, Migrate: true, Logger: quietLogger()})
	wantErr(t, err, queue.ErrStreamMismatch, "cannot migrate", "holds 20 messages", "more than max_bytes 100B")
	if s := streamState(t, e.js, "INGEST"); s.Msgs != 20 {
		t.Fatalf("a refused migration left %d of 20 messages", s.Msgs)
	}

	src, err := queue.Open(ctx, e.nc, queue.Options{MaxBytes: 2 << 30, Migrate: true, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Open with Migrate and a larger limit: %v", err)
	}
	defer src.Close()
	st, err := e.js.Stream(ctx, "INGEST")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxBytes; got != 2<<30 || st.CachedInfo().State.Msgs != 20 {
		t.Fatalf("migrated stream: max bytes %d with %d messages; want %d with all 20", got, st.CachedInfo().State.Msgs, 2<<30)
	}
	fetchN(t, src, 20, true)
}

// TestOpen_WorkQueueOneConsumer: a second consumer name on the work queue
// is refused with what to do.
func TestOpen_WorkQueueOneConsumer(t *testing.T) {
	e := newEnv(t, nil)
	_, err := queue.Open(context.Background(), e.nc, queue.Options{Consumer: "other", Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "work queue") || !strings.Contains(err.Error(), "queue.consumer") {
		t.Fatalf("Open with a second consumer name = %v, want an error saying the work queue allows one consumer", err)
	}
}

// TestOpen_NoRoomForLimit: a byte limit the server cannot reserve is
// refused naming the key to lower.
func TestOpen_NoRoomForLimit(t *testing.T) {
	emb := startServer(t, testConfig(t))
	nc := connect(t, emb)
	_, err := queue.Open(context.Background(), nc, queue.Options{MaxBytes: 1 << 60, Logger: quietLogger()})
	if err == nil {
		t.Fatal("Open with a 1 EiB stream succeeded")
	}
	contains(t, err, "queue.max_bytes 1048576TiB", "insufficient storage", "lower queue.max_bytes")
}
