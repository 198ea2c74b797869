package sink_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/record"

	"github.com/sluice-dev/sluice/sink"
)

// benchFrame is 100 records of 200 bytes.
func benchFrame() []record.Record {
	rs := make([]record.Record, 100)
	for i := range rs {
		rs[i].Data = bytes.Repeat([]byte{'r'}, 200)
	}
	return rs
}

func discardDrainer(b *testing.B) string {
	b.Helper()
	path := socketPath(b)
	startDrainer(b, path, func(_ int, c net.Conn) { io.Copy(io.Discard, c) })
	return path
}

// BenchmarkWriter_Send sends 100 × 200-byte frames through a Writer to a
// reader that discards them. Compare with BenchmarkRawSocket.
func BenchmarkWriter_Send(b *testing.B) {
	path := discardDrainer(b)
	w, _ := newWriter(b, sink.Options{Path: path})
	rs := benchFrame()
	done := func(error) {}
	ctx := context.Background()
	b.SetBytes(100 * 201)
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Send(ctx, rs, done); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriter_SendParallel is BenchmarkWriter_Send from GOMAXPROCS
// goroutines sharing the Writer.
func BenchmarkWriter_SendParallel(b *testing.B) {
	path := discardDrainer(b)
	w, _ := newWriter(b, sink.Options{Path: path})
	ctx := context.Background()
	b.SetBytes(100 * 201)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		rs := benchFrame()
		done := func(error) {}
		for pb.Next() {
			if err := w.Send(ctx, rs, done); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRawSocket writes the same bytes as BenchmarkWriter_Send directly
// to a net.UnixConn, one Write per frame: the floor the Writer is measured
// against.
func BenchmarkRawSocket(b *testing.B) {
	path := discardDrainer(b)
	c, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var frame []byte
	for _, r := range benchFrame() {
		frame = append(append(frame, r.Data...), '\n')
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(frame); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriter_SendAcked is BenchmarkWriter_Send in the acked framing,
// against a test drainer that acknowledges every frame as soon as it has
// read it (no fsync): the cost of the framing, the window and the acks.
// Each op is one Send; the benchmark waits for the last ack.
func BenchmarkWriter_SendAcked(b *testing.B) {
	path := socketPath(b)
	startAckPeer(b, path, &ackPeer{quiet: true})
	w, _ := ackedWriter(b, path, sink.Options{})
	rs := benchFrame()
	for i := range rs {
		rs[i].ID = record.ID{Stream: "INGEST", Seq: 1, Index: uint32(i)}
	}
	var acked atomic.Int64
	done := func(error) { acked.Add(1) }
	ctx := context.Background()
	b.SetBytes(100 * 201)
	b.ReportAllocs()
	n := int64(0)
	for b.Loop() {
		if err := w.Send(ctx, rs, done); err != nil {
			b.Fatal(err)
		}
		n++
	}
	testkit.WaitFor(b, 30*time.Second, func() error {
		if got := acked.Load(); got != n {
			return fmt.Errorf("%d of %d acked", got, n)
		}
		return nil
	})
}
