package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/wire"
)

// streamEmpty waits until the consumed stream holds no message and no
// byte: what sluice delivered and acknowledged has left the disk.
func streamEmpty(t *testing.T, js jetstream.JetStream, cfg *config.Config) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, cfg.Queue.Stream)
		if err != nil {
			return err
		}
		if s := st.CachedInfo().State; s.Msgs != 0 || s.Bytes != 0 {
			return fmt.Errorf("stream %s holds %d messages, %d bytes (last seq %d)", cfg.Queue.Stream, s.Msgs, s.Bytes, s.LastSeq)
		}
		return nil
	}
}

// TestService_DrainedStreamIsEmpty: through the whole service (embedded
// queue, pipeline, sink) and the reference drainer, in both framings, the
// input stream is empty once everything was drained: acknowledged
// messages do not stay on disk.
func TestService_DrainedStreamIsEmpty(t *testing.T) {
	for _, framing := range wire.Framings {
		t.Run(string(framing), func(t *testing.T) {
			cfg, dir := testConfig(t)
			cfg.Sink.Framing = framing
			out := filepath.Join(dir, "out")
			startDrainOpts(t, drain.Options{Socket: cfg.Sink.Socket, Out: out, Framing: framing})
			svc, stop := startService(t, cfg)
			js := publisher(t, svc)

			const total = 3000
			publish(t, js, 0, 1000, 1)
			publish(t, js, 1000, total, 10)
			waitFor(t, 60*time.Second, "all records drained", distinct(t, total, out))
			waitFor(t, 30*time.Second, "every message acked", consumerSettled(t, js, cfg))
			waitFor(t, 30*time.Second, "the stream to be empty", streamEmpty(t, js, cfg))
			last, err := svc.src.Last(context.Background())
			if err != nil || last.Seq != 1000+200 {
				t.Fatalf("Last = %+v, %v; want the stream's numbering kept (last seq %d) while it is empty", last, err, 1000+200)
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			exactlyOnce(t, total, out)
		})
	}
}

// TestService_FullStreamRefusesPublish: with no drainer, the input stream
// fills up to queue.max_bytes and then refuses publishes with an error
// (queue.discard new) instead of dropping stored messages; once a drainer
// comes, every message the stream accepted is delivered exactly once, the
// stream empties and accepts publishes again.
func TestService_FullStreamRefusesPublish(t *testing.T) {
	cfg, dir := testConfig(t)
	cfg.Queue.MaxBytes = 64 * config.KiB
	cfg.Sink.Framing = wire.FramingAcked
	svc, stop := startService(t, cfg) // no drainer yet
	js := publisher(t, svc)
	ctx := context.Background()

	stored := 0
	var refused error
	for stored < 2000 { // 64 KiB holds a few hundred of these
		rec := fmt.Sprintf("{\"n\":%d,\"pad\":\"%s\"}", stored, strings.Repeat("x", 150))
		if _, refused = js.Publish(ctx, "ingest.test", []byte(rec)); refused != nil {
			break
		}
		stored++
	}
	if refused == nil || !strings.Contains(refused.Error(), "maximum bytes exceeded") {
		t.Fatalf("after %d publishes into a 64KiB stream: %v; want a refusal (maximum bytes exceeded)", stored, refused)
	}
	if stored < 100 {
		t.Fatalf("the stream refused after only %d messages", stored)
	}

	out := filepath.Join(dir, "out")
	startDrainOpts(t, drain.Options{Socket: cfg.Sink.Socket, Out: out, Framing: wire.FramingAcked})
	waitFor(t, 60*time.Second, "every stored record drained", distinct(t, stored, out))
	waitFor(t, 30*time.Second, "every message acked", consumerSettled(t, js, cfg))
	waitFor(t, 30*time.Second, "the stream to be empty", streamEmpty(t, js, cfg))
	publish(t, js, stored, stored+10, 1) // room again
	waitFor(t, 60*time.Second, "the later records drained", distinct(t, stored+10, out))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, stored+10, out)
}
