package bench_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/sink"

	// Imported for their fault points, so fault.All() holds every point
	// the service registers.
	_ "github.com/sluice-dev/sluice/drain"
	_ "github.com/sluice-dev/sluice/queue"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// frame is 100 records of 200 bytes, as in sink's own benchmarks.
func frame() []record.Record {
	rs := make([]record.Record, 100)
	for i := range rs {
		rs[i].Data = bytes.Repeat([]byte{'r'}, 200)
	}
	return rs
}

// startReader listens on a fresh Unix socket and discards what arrives.
func startReader(b *testing.B) string {
	b.Helper()
	dir, err := os.MkdirTemp("", "bn")
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	b.Cleanup(func() { ln.Close(); <-done; os.RemoveAll(dir) })
	return path
}

// newWriter returns a started sink.Writer on a discarding reader.
func newWriter(b *testing.B) *sink.Writer {
	b.Helper()
	w := sink.New(sink.Options{Path: startReader(b), Logger: discard})
	w.Start(context.Background())
	b.Cleanup(func() { w.Close() })
	return w
}

// offPoints returns every registered fault point, failing if one is on.
func offPoints(b *testing.B) []*fault.Point {
	b.Helper()
	pts := fault.All()
	for _, p := range pts {
		if p.Action() != nil {
			b.Fatalf("fault point %s is on", p.Name())
		}
	}
	return pts
}

// BenchmarkFaultPoints_Off hits every registered fault point once per op,
// all of them off. A frame passes a few of them (sink.write.before,
// sink.write.after, the pipeline's), never all, so this is an upper bound of
// the per-frame cost of fault points. Compare with BenchmarkWriter_Send's
// ns/op for the overhead ratio.
func BenchmarkFaultPoints_Off(b *testing.B) {
	pts := offPoints(b)
	ctx := context.Background()
	for b.Loop() {
		for _, p := range pts {
			if err := p.Hit(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(pts)), "points")
}

// BenchmarkWriter_Send is the per-frame cost the fault points are measured
// against: one 100 × 200-byte frame through sink.Writer to a reader.
func BenchmarkWriter_Send(b *testing.B) {
	offPoints(b)
	w := newWriter(b)
	sendLoop(b, w)
}

func sendLoop(b *testing.B, w *sink.Writer) {
	rs := frame()
	done := func(error) {}
	ctx := context.Background()
	b.SetBytes(100 * 201)
	for b.Loop() {
		if err := w.Send(ctx, rs, done); err != nil {
			b.Fatal(err)
		}
	}
}

// withRecorder runs fn with the flight recorder off, then on, in the same
// process and run, so the pair's ns/op give the recorder's overhead.
func withRecorder(b *testing.B, fn func(b *testing.B)) {
	b.Run("recorder=off", fn)
	b.Run("recorder=on", func(b *testing.B) {
		f, err := obs.StartFlightRecorder(obs.FlightOptions{Dir: b.TempDir(), Logger: discard})
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		fn(b)
	})
}

// BenchmarkFlightRecorder_Send is BenchmarkWriter_Send with the flight
// recorder off and on.
func BenchmarkFlightRecorder_Send(b *testing.B) {
	withRecorder(b, func(b *testing.B) {
		w := newWriter(b)
		sendLoop(b, w)
	})
}

// BenchmarkFlightRecorder_SendParallel shares one Writer between 8
// goroutines per CPU, as pipeline workers do: more goroutine switches on the
// writers' locks, which is what the tracer records.
func BenchmarkFlightRecorder_SendParallel(b *testing.B) {
	withRecorder(b, func(b *testing.B) {
		w := newWriter(b)
		ctx := context.Background()
		b.SetBytes(100 * 201)
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			rs := frame()
			done := func(error) {}
			for pb.Next() {
				if err := w.Send(ctx, rs, done); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkFlightRecorder_Ratio sends frames through one Writer in blocks
// of 2000, switching the flight recorder on and off between blocks (the
// switch itself is not timed), and reports the recorder's cost as the ratio
// of per-frame time on to off. Alternating blocks in one run keeps a busy,
// shared machine's drift out of the ratio, which separate runs do not.
func BenchmarkFlightRecorder_Ratio(b *testing.B) {
	w := newWriter(b)
	rs := frame()
	done := func(error) {}
	ctx := context.Background()
	dir := b.TempDir()
	const block = 2000
	var spent [2]time.Duration // off, on
	var frames [2]int
	b.SetBytes(100 * 201)
	b.ResetTimer()
	for i, on := 0, 0; i < b.N; on ^= 1 {
		var f *obs.FlightRecorder
		if on == 1 {
			b.StopTimer()
			var err error
			if f, err = obs.StartFlightRecorder(obs.FlightOptions{Dir: dir, Logger: discard}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		start := time.Now()
		n := min(block, b.N-i)
		for range n {
			if err := w.Send(ctx, rs, done); err != nil {
				b.Fatal(err)
			}
		}
		spent[on] += time.Since(start)
		frames[on] += n
		i += n
		if f != nil {
			b.StopTimer()
			f.Close()
			b.StartTimer()
		}
	}
	if frames[0] > 0 && frames[1] > 0 {
		off := float64(spent[0]) / float64(frames[0])
		onNs := float64(spent[1]) / float64(frames[1])
		b.ReportMetric(off, "ns/frame-off")
		b.ReportMetric(onNs, "ns/frame-on")
		b.ReportMetric(onNs/off, "on/off")
	}
}
