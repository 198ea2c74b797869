package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/drain"
)

// runBatch starts the service, publishes records [from, to) one per
// message, waits until out holds all of [0, to) and every message is
// acked, and stops the service.
func runBatch(t *testing.T, cfg *config.Config, out string, from, to int) {
	t.Helper()
	svc, stop := startService(t, cfg)
	js := publisher(t, svc)
	publish(t, js, from, to, 1)
	waitFor(t, 60*time.Second, "all records drained", distinct(t, to, out))
	waitFor(t, 30*time.Second, "every message acked", consumerSettled(t, js, cfg))
	if err := stop(); err != nil {
		t.Fatalf("service shutdown: %v", err)
	}
}

// The queue's stream is created again (its data directory deleted) while
// the drainer keeps its output and dedup journal: the new stream's
// sequences start over at 1 in a new epoch, and every new record is
// delivered, none taken for a duplicate of the old stream's.
func TestService_StreamRecreatedDelivered(t *testing.T) {
	cfg, dir := testConfig(t)
	cfg.Sink.Framing = "acked"
	out := filepath.Join(dir, "out")
	startDrainOpts(t, drain.Options{Socket: cfg.Sink.Socket, Out: out, Framing: "acked"})
	runBatch(t, cfg, out, 0, 200)
	if err := os.RemoveAll(cfg.Queue.DataDir); err != nil {
		t.Fatal(err)
	}
	runBatch(t, cfg, out, 200, 400)
	exactlyOnce(t, 400, out)
}

// The queue's store loses its tail (here: restored from a backup taken
// before the last 100 messages) while the drainer keeps what it committed.
// sluice's HELLO then says the stream's last sequence is below the
// drainer's: the drainer refuses it, and keeps refusing after new messages
// take the stream past the committed sequence; nothing is written and
// nothing acked on the queue. A drainer started with AcceptRewind then
// delivers every new message exactly once; the records of the lost
// messages stay in the output.
func TestService_QueueRewindRefusedThenAccepted(t *testing.T) {
	cfg, dir := testConfig(t)
	cfg.Sink.Framing = "acked"
	out := filepath.Join(dir, "out")
	dreg := prometheus.NewRegistry()
	_, stopDrain := startDrainOpts(t, drain.Options{Socket: cfg.Sink.Socket, Out: out, Framing: "acked", Registerer: dreg})
	runBatch(t, cfg, out, 0, 100)
	backup := filepath.Join(dir, "backup")
	if err := os.CopyFS(backup, os.DirFS(cfg.Queue.DataDir)); err != nil {
		t.Fatal(err)
	}
	runBatch(t, cfg, out, 100, 200)
	if err := os.RemoveAll(cfg.Queue.DataDir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(cfg.Queue.DataDir, os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}
	// os.CopyFS does not keep modes; a restore that does (cp -a, rsync -a)
	// keeps the queue token owner-only, which sluice requires.
	if err := os.Chmod(cfg.QueueTokenFile(), 0o600); err != nil {
		t.Fatal(err)
	}

	svc, stop := startService(t, cfg)
	js := publisher(t, svc)
	refusals := func(atLeast float64) func() error {
		return func() error {
			if n := gatherSum(t, dreg, "sluice_drain_rewinds_total"); n < atLeast {
				return fmt.Errorf("%v refusals", n)
			}
			return nil
		}
	}
	waitFor(t, 30*time.Second, "the drainer to refuse the rewound queue", refusals(1))
	publish(t, js, 200, 350, 1) // sequences 101..250: past the committed 200
	seen := gatherSum(t, dreg, "sluice_drain_rewinds_total")
	waitFor(t, 30*time.Second, "a refusal after the queue passed the committed sequence", refusals(seen+1))
	if got := outputCounts(t, out); len(got) != 200 {
		t.Fatalf("%d distinct records in the output while refused, want the 200 committed before", len(got))
	}
	ackFloor := func() uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, cfg.Queue.Stream, cfg.Queue.Consumer)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.AckFloor.Stream
	}
	if floor := ackFloor(); floor > 100 {
		t.Fatalf("the consumer's ack floor is stream sequence %d while the drainer refused: messages past the restored 100 were acked undelivered", floor)
	}
	stopDrain()

	areg := prometheus.NewRegistry()
	startDrainOpts(t, drain.Options{Socket: cfg.Sink.Socket, Out: out, Framing: "acked", AcceptRewind: true, Registerer: areg})
	waitFor(t, 60*time.Second, "all records drained", distinct(t, 350, out))
	waitFor(t, 30*time.Second, "every message acked", consumerSettled(t, js, cfg))
	if err := stop(); err != nil {
		t.Fatalf("service shutdown: %v", err)
	}
	exactlyOnce(t, 350, out)
	if n := gatherSum(t, areg, "sluice_drain_rewinds_total"); n != 1 {
		t.Errorf("sluice_drain_rewinds_total = %v after the accepting drainer, want 1 (accepted)", n)
	}
}
