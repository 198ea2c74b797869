package main

import (
	"context"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/wire"
)

// heapBound is the most heap the service may use while large records flow
// through it. Before records too large for the sink were dead-lettered, a
// 5 MiB record in acked framing was redelivered about 55,000 times and the
// process grew past 1 GiB.
const heapBound = 256 << 20

// TestService_LargeRecordsDeadLettered: one valid record too large to
// deliver, between valid ones, does not stop or swamp the pipeline: the
// valid records flow, the large one is in the dead-letter stream with its
// reason, every message is acked, and the heap stays under heapBound.
//
//   - lines, 2 MiB: larger than the drainer's 1 MiB line; the gate
//     (process.max_record_bytes, which start checks against
//     drain.max_line_bytes) refuses it. Before, the pipeline stopped.
//   - acked, 5 MiB: larger than the 4 MiB frame; the gate refuses it.
//   - acked, 5 MiB with the gate raised to 8 MiB and drain.max_frame_bytes
//     to 16 MiB, but a drainer that grants its default 4 MiB: the sink
//     refuses the message (sluice's settings cannot know the drainer's),
//     and it is dead-lettered as too_large instead of redelivered forever.
func TestService_LargeRecordsDeadLettered(t *testing.T) {
	for _, tc := range []struct {
		name    string
		framing wire.Framing
		size    int
		adjust  func(*config.Config)
		reason  string
	}{
		{"lines-2MiB", wire.FramingLines, 2 << 20, nil, "max_record_bytes: "},
		{"acked-5MiB", wire.FramingAcked, 5 << 20, nil, "max_record_bytes: "},
		{"acked-5MiB-past-gate", wire.FramingAcked, 5 << 20, func(c *config.Config) {
			c.Process.MaxRecordBytes = 8 * config.MiB
			c.Drain.MaxFrameBytes = 16 * config.MiB
		}, "too_large: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, dir := testConfig(t)
			cfg.Sink.Framing = tc.framing
			if tc.adjust != nil {
				tc.adjust(cfg)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out")
			startDrainOpts(t, drain.Options{Socket: cfg.Sink.Socket, Out: out, Framing: tc.framing})
			peak := watchHeap(t)
			svc, stop := startService(t, cfg)
			js := publisher(t, svc)

			const big = 3
			publish(t, js, 0, 100, 10)
			payload := []byte(`{"big":true,"pad":"` + strings.Repeat("x", tc.size) + `"}`)
			for range big {
				if _, err := js.Publish(context.Background(), "ingest.test", payload); err != nil {
					t.Fatal(err)
				}
			}
			publish(t, js, 100, 200, 10)
			waitFor(t, 60*time.Second, "the valid records drained", distinct(t, 200, out))
			waitFor(t, 60*time.Second, "every message acked", consumerSettled(t, js, cfg))

			dls, err := js.Stream(context.Background(), cfg.Queue.DeadLetterStream)
			if err != nil {
				t.Fatal(err)
			}
			info, err := dls.Info(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Msgs != big {
				t.Fatalf("dead-letter stream holds %d messages, want the %d large ones", info.State.Msgs, big)
			}
			for seq := uint64(1); seq <= big; seq++ {
				m, err := dls.GetMsg(context.Background(), info.State.FirstSeq+seq-1)
				if err != nil {
					t.Fatal(err)
				}
				if r := m.Header.Get("Sluice-Reason"); !strings.HasPrefix(r, tc.reason) || len(m.Data) != len(payload) {
					t.Fatalf("dead letter %d: %d bytes, reason %q; want the %d-byte record, reason %s...", seq, len(m.Data), r, len(payload), tc.reason)
				}
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if got := exactCounts(t, out); got != 200 {
				t.Fatalf("%d distinct valid records in the output, want 200 exactly once", got)
			}
			if p := peak(); p > heapBound {
				t.Fatalf("heap peaked at %d MiB, bound %d MiB", p>>20, heapBound>>20)
			} else {
				t.Logf("heap peak %d MiB", p>>20)
			}
		})
	}
}

// exactCounts returns how many distinct records out holds, failing the
// test on a record seen twice or a torn line.
func exactCounts(t *testing.T, out string) int {
	t.Helper()
	got := outputCounts(t, out)
	for n, c := range got {
		if c != 1 {
			t.Fatalf("record %d appears %d times", n, c)
		}
	}
	return len(got)
}

// watchHeap samples the heap in use every few milliseconds until the test
// ends; the returned function gives the peak so far.
func watchHeap(t *testing.T) func() uint64 {
	var (
		mu   sync.Mutex
		peak uint64
	)
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			mu.Lock()
			peak = max(peak, sample[0].Value.Uint64())
			mu.Unlock()
			select {
			case <-tick.C:
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { close(done); <-stopped })
	return func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}
