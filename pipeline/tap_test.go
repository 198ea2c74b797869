package pipeline_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/process"
	"github.com/sluice-dev/sluice/tap"
)

// Every record shows at the stage it passes: off the queue (in), to the
// sink (out), to the dead-letter subject (dead, with its reason), each with
// its identity and subject.
func TestPipeline_Tap(t *testing.T) {
	hub := tap.NewHub(nil)
	subs := map[tap.Stage]*tap.Sub{}
	for _, s := range []tap.Stage{tap.In, tap.Out, tap.Dead} {
		subs[s] = hub.Subscribe(s, tap.SubOptions{Rate: math.Inf(1), Buffer: 100})
		defer subs[s].Close()
	}
	src := newFakeSource("{\"ok\":1}\n{broken\n{\"ok\":2}", `not json`, `{"ok":3}`)
	o := opts(nil)
	o.Tap = hub
	p := pipeline.New(src, &fakeDLQ{}, process.Validator{}, &gateSink{}, o)
	stop := start(t, p)
	waitFor(t, "acks", func() bool { _, a, _ := src.counts(); return a == 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := func(s tap.Stage) []string {
		var out []string
		for len(subs[s].C()) > 0 {
			e := <-subs[s].C()
			if e.Stream != "TEST" || e.Epoch != 7 || e.Subject != "ingest.test" || e.Stage != s.String() {
				t.Errorf("%s event %+v", s, e)
			}
			line := fmt.Sprintf("%d/%d %s", e.Seq, e.Index, e.Data)
			if e.Reason != "" {
				line += " (" + e.Reason[:12] + ")"
			}
			out = append(out, line)
		}
		slices.Sort(out) // workers finish in any order
		return out
	}
	for s, want := range map[tap.Stage][]string{
		tap.In:   {`1/0 {"ok":1}`, `1/1 {broken`, `1/2 {"ok":2}`, `2/0 not json`, `3/0 {"ok":3}`},
		tap.Out:  {`1/0 {"ok":1}`, `1/2 {"ok":2}`, `3/0 {"ok":3}`},
		tap.Dead: {`1/1 {broken (invalid_json)`, `2/0 not json (invalid_json)`},
	} {
		if g := got(s); !slices.Equal(g, want) {
			t.Errorf("tap %s = %q, want %q", s, g, want)
		}
	}
}

// BenchmarkPipeline_Tap is BenchmarkPipeline's path (10 records a message)
// with no tap hub, with a hub nobody taps (the cost sluice run always
// pays: one atomic load at each of the three points), and with a tap on
// every stage at the highest rate cap (tap.MaxRate) whose reader never
// reads (every event past its buffer is dropped, never waited for).
func BenchmarkPipeline_Tap(b *testing.B) {
	var sb strings.Builder
	for i := range 10 {
		fmt.Fprintf(&sb, "{\"i\":%d,\"pad\":%q}\n", i, strings.Repeat("x", 180))
	}
	payload := []byte(sb.String())
	for _, mode := range []string{"none", "idle", "stalled-readers"} {
		b.Run("tap="+mode, func(b *testing.B) {
			var hub *tap.Hub
			if mode != "none" {
				hub = tap.NewHub(nil)
			}
			if mode == "stalled-readers" {
				for _, s := range []tap.Stage{tap.In, tap.Out, tap.Dead} {
					defer hub.Subscribe(s, tap.SubOptions{Rate: tap.MaxRate, Buffer: 1}).Close()
				}
			}
			src := &benchSource{all: make(chan struct{}), n: int64(b.N)}
			for i := range b.N {
				src.msgs = append(src.msgs, newBenchMsg(uint64(i+1), payload))
			}
			p := pipeline.New(src, nil, identity{}, instantSink{}, pipeline.Options{
				Workers: 2, FetchWait: time.Millisecond, Tap: hub,
				Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry(),
			})
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			go func() { errc <- p.Run(ctx) }()
			<-src.all
			b.StopTimer()
			cancel()
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		})
	}
}
