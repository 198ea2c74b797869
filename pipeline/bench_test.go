package pipeline_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/process"
	"github.com/sluice-dev/sluice/record"
)

// benchSource hands out n prebuilt messages, then nothing, and counts acks.
type benchSource struct {
	mu    sync.Mutex
	msgs  []pipeline.Message
	acked atomic.Int64
	all   chan struct{} // closed when every message is acked
	n     int64
}

func (s *benchSource) Fetch(ctx context.Context, max int, wait time.Duration) ([]pipeline.Message, error) {
	s.mu.Lock()
	n := min(max, len(s.msgs))
	out := s.msgs[:n:n]
	s.msgs = s.msgs[n:]
	s.mu.Unlock()
	if n == 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

func (s *benchSource) Ack(msgs []pipeline.Message) error {
	if s.acked.Add(int64(len(msgs))) == s.n {
		close(s.all)
	}
	return nil
}

func (s *benchSource) Nak([]pipeline.Message) error { return nil }

// instantSink delivers every frame at once.
type instantSink struct{}

func (instantSink) Send(_ context.Context, _ []record.Record, done func(error)) error {
	done(nil)
	return nil
}

// identity is a Processor that delivers each record as it is.
type identity struct{}

func (identity) CheckMessage([]byte) error  { return nil }
func (identity) NewWorker() pipeline.Worker { return identity{} }
func (identity) Process(in pipeline.Input, buf []byte) ([]byte, []byte, error) {
	return in.Data, buf, nil
}

// BenchmarkPipeline measures the pipeline's own path per queue message:
// fetch, split, chunking, processing with an identity processor, hand-over
// to a sink that delivers at once, and the ack. One op is one message;
// allocs/msg counts every allocation while the pipeline runs (allocs/op
// rounds down to whole numbers), divided by the messages.
func BenchmarkPipeline(b *testing.B) {
	for _, perMsg := range []int{1, 10, 2000} {
		b.Run(fmt.Sprintf("records=%d", perMsg), func(b *testing.B) {
			var sb strings.Builder
			for i := range perMsg {
				fmt.Fprintf(&sb, "{\"i\":%d,\"pad\":%q}\n", i, strings.Repeat("x", 180))
			}
			runPipeline(b, []byte(sb.String()), identity{}, false)
		})
	}
}

// runPipeline runs b.N messages of payload through the pipeline with proc
// (and Options.Ordered as ordered) and a sink that delivers at once.
func runPipeline(b *testing.B, payload []byte, proc pipeline.Processor, ordered bool) {
	b.Helper()
	src := &benchSource{all: make(chan struct{}), n: int64(b.N)}
	for i := range b.N {
		src.msgs = append(src.msgs, newBenchMsg(uint64(i+1), payload))
	}
	p := pipeline.New(src, nil, proc, instantSink{}, pipeline.Options{
		Workers: 2, FetchWait: time.Millisecond, Ordered: ordered,
		Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	go func() { errc <- p.Run(ctx) }()
	<-src.all
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N), "allocs/msg")
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPipelineProcessing compares the JSON gate alone with the gate
// and the three-step transform (filter, set two fields, delete one) on the
// pipeline's whole path, 100 records a message, 2 workers, and the
// transform with Ordered (pipeline.order_by). One op is one message; the
// ratios are in process/BENCH.md.
func BenchmarkPipelineProcessing(b *testing.B) {
	var sb strings.Builder
	for i := range 100 {
		fmt.Fprintf(&sb, `{"id":"e-%06d","event":"click","user":"user%04d","password":"s3cr3t-%05d","amount":%d.25,"geo":{"country":"FR","city":"Paris"},"ts":17324600%011d,"tags":["a","b"],"ok":true}`+"\n",
			i, i, i*7, i%977, i*1_000_003)
	}
	transform, err := process.New(process.Options{Steps: []process.Step{
		{Filter: `event != "drop"`},
		{Set: []process.Assignment{{Path: "ingested_at", Expr: "now()"}, {Path: "user", Expr: "upper(user)"}}},
		{Delete: []string{"password"}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		proc    pipeline.Processor
		ordered bool
	}{{"validate", process.Validator{}, false}, {"transform", transform, false}, {"transform-ordered", transform, true}} {
		b.Run(tc.name, func(b *testing.B) { runPipeline(b, []byte(sb.String()), tc.proc, tc.ordered) })
	}
}

func newBenchMsg(seq uint64, data []byte) pipeline.Message { return &fakeMsg{seq: seq, data: data} }
