package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/queue"
)

// Results and the command that made them are in bench_results.txt.

// benchRecord is a 200-byte JSON record, the size DESIGN.md measured with.
var benchRecord = func() []byte {
	b := []byte(`{"id":12345,"kind":"click","user":"u-000042","path":"/a/b/c","pad":"`)
	for len(b) < 198 {
		b = append(b, 'x')
	}
	return append(b, '"', '}')
}()

func benchEnv(b *testing.B, disablePrefetch bool) (*queue.Source, jetstream.JetStream) {
	b.Helper()
	emb := startServer(b, testConfig(b))
	nc := connect(b, emb)
	ctx, cancel := context.WithTimeout(context.Background(), stallGuard)
	defer cancel()
	src, err := queue.Open(ctx, nc, queue.Options{Logger: quietLogger(), DisablePrefetch: disablePrefetch})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = src.Close() })
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	return src, js
}

func publishAsync(b *testing.B, js jetstream.JetStream, n int) {
	b.Helper()
	futs := make([]jetstream.PubAckFuture, 0, n)
	for i := 0; i < n; i++ {
		f, err := js.PublishAsync("ingest.bench", benchRecord, jetstream.WithStallWait(stallGuard))
		if err != nil {
			b.Fatal(err)
		}
		futs = append(futs, f)
	}
	checkPublished(b, js, futs)
}

// BenchmarkPublish is the raw JetStream publish rate on the embedded server
// over an in-process connection: sync waits for each PubAck, async keeps up
// to 4096 in flight.
func BenchmarkPublish(b *testing.B) {
	b.Run("sync", func(b *testing.B) {
		_, js := benchEnv(b, false)
		ctx := context.Background()
		b.SetBytes(int64(len(benchRecord)))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := js.Publish(ctx, "ingest.bench", benchRecord); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("async", func(b *testing.B) {
		_, js := benchEnv(b, false)
		b.SetBytes(int64(len(benchRecord)))
		b.ResetTimer()
		publishAsync(b, js, b.N)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// BenchmarkFetchAck is the consume rate through Source: Fetch(500, 200ms)
// and one Ack per message, from a stream holding b.N messages. work is
// simulated per-message processing between fetches (a busy loop), which is
// what prefetching overlaps with delivery.
func BenchmarkFetchAck(b *testing.B) {
	for _, bc := range []struct {
		name       string
		noPrefetch bool
		work       time.Duration
	}{
		{"prefetch/work=0", false, 0},
		{"no-prefetch/work=0", true, 0},
		{"prefetch/work=2us", false, 2 * time.Microsecond},
		{"no-prefetch/work=2us", true, 2 * time.Microsecond},
	} {
		b.Run(bc.name, func(b *testing.B) {
			src, js := benchEnv(b, bc.noPrefetch)
			publishAsync(b, js, b.N)
			ctx := context.Background()
			b.SetBytes(int64(len(benchRecord)))
			b.ResetTimer()
			got, fetches, empty := 0, 0, 0
			for got < b.N {
				msgs, err := src.Fetch(ctx, 500, 200*time.Millisecond)
				if err != nil {
					b.Fatal(err)
				}
				if len(msgs) == 0 {
					// A loaded machine can be slow to answer the first
					// pull; only a run of empty fetches is a stall.
					if empty++; time.Duration(empty)*200*time.Millisecond > stallGuard {
						b.Fatalf("consumption stalled after %d of %d messages", got, b.N)
					}
					continue
				}
				empty = 0
				fetches++
				if bc.work > 0 {
					spin(time.Duration(len(msgs)) * bc.work)
				}
				if err := src.Ack(msgs); err != nil {
					b.Fatal(err)
				}
				got += len(msgs)
			}
			b.ReportMetric(float64(got)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(got)/float64(fetches), "msgs/fetch")
		})
	}
}

// spin burns CPU for d, standing in for processing.
func spin(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
	}
}

// BenchmarkRawFetchAck is the baseline the Source is compared with: the
// jetstream package's Fetch(500, FetchMaxWait(200ms)) waiting for each full
// batch, and one Ack per message, with no Source in between.
func BenchmarkRawFetchAck(b *testing.B) {
	_, js := benchEnv(b, false)
	publishAsync(b, js, b.N)
	ctx := context.Background()
	cons, err := js.Consumer(ctx, "INGEST", "sluice")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(benchRecord)))
	b.ResetTimer()
	got := 0
	for got < b.N {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			b.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.Ack(); err != nil {
				b.Fatal(err)
			}
			got++
		}
		if err := batch.Error(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(got)/b.Elapsed().Seconds(), "msgs/s")
}
