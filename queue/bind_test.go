package queue_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/queue"
)

// With Bind (queue.create: false) Open creates nothing: a missing stream
// or consumer, or a consumer that differs in what sluice relies on, is an
// error naming both values; streams and a consumer made as sluice would
// make them are used.
func TestOpen_Bind(t *testing.T) {
	emb := startServer(t, testConfig(t))
	nc := connect(t, emb)
	open := func(o queue.Options) error {
		ctx, cancel := context.WithTimeout(context.Background(), stallGuard)
		defer cancel()
		o.Logger = quietLogger()
		src, err := queue.Open(ctx, nc, o)
		if err == nil {
			src.Close()
		}
		return err
	}
	err := open(queue.Options{Bind: true})
	if !errors.Is(err, queue.ErrStreamMismatch) || !strings.Contains(err.Error(), `stream "INGEST" does not exist`) || !strings.Contains(err.Error(), "queue.create") {
		t.Fatalf("bind with no stream: %v", err)
	}
	// Let Open create both streams and the consumer, then delete the
	// consumer and make one by hand with other settings (a work queue
	// admits explicit acks only, so the ack policy cannot differ here).
	if err := open(queue.Options{}); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := js.DeleteConsumer(ctx, "INGEST", queue.DefaultConsumer); err != nil {
		t.Fatal(err)
	}
	err = open(queue.Options{Bind: true})
	if !errors.Is(err, queue.ErrStreamMismatch) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("bind with no consumer: %v", err)
	}
	if _, err := js.CreateConsumer(ctx, "INGEST", jetstream.ConsumerConfig{Durable: queue.DefaultConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 5 * time.Second, MaxAckPending: 7}); err != nil {
		t.Fatal(err)
	}
	err = open(queue.Options{Bind: true})
	if !errors.Is(err, queue.ErrStreamMismatch) || !strings.Contains(err.Error(), "queue.max_ack_pending 7 on the consumer") || !strings.Contains(err.Error(), "queue.ack_wait 5s on the consumer, 30s configured") {
		t.Fatalf("bind to a consumer with other settings: %v", err)
	}
	if err := js.DeleteConsumer(ctx, "INGEST", queue.DefaultConsumer); err != nil {
		t.Fatal(err)
	}
	if err := open(queue.Options{}); err != nil { // sluice makes the consumer again
		t.Fatal(err)
	}
	if err := open(queue.Options{Bind: true}); err != nil {
		t.Fatalf("bind to what sluice made: %v", err)
	}
	// A stream with another storage or replica count is a mismatch too.
	if err := open(queue.Options{Bind: true, Storage: queue.StorageMemory}); !errors.Is(err, queue.ErrStreamMismatch) || !strings.Contains(err.Error(), "storage File on the stream, Memory configured") {
		t.Fatalf("bind with another storage: %v", err)
	}
}
