package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/record"
)

// jitter is a processor whose workers take a random while over each
// record, so that chunks finish processing in any order.
type jitter struct{}

func (jitter) CheckMessage([]byte) error { return nil }
func (jitter) NewWorker() pipeline.Worker {
	return &jitterWorker{r: rand.New(rand.NewPCG(rand.Uint64(), 1))}
}

type jitterWorker struct{ r *rand.Rand }

func (w *jitterWorker) Process(in pipeline.Input, buf []byte) ([]byte, []byte, error) {
	if w.r.IntN(50) == 0 {
		time.Sleep(time.Duration(w.r.IntN(300)) * time.Microsecond)
	}
	return in.Data, buf, nil
}

// orderSink records the records in the order Send is called.
type orderSink struct {
	mu   sync.Mutex
	recs []record.Record
}

func (s *orderSink) Send(_ context.Context, recs []record.Record, done func(error)) error {
	s.mu.Lock()
	for _, r := range recs {
		r.Data = append([]byte(nil), r.Data...)
		s.recs = append(s.recs, r)
	}
	s.mu.Unlock()
	done(nil)
	return nil
}

// TestPipeline_OrderedKeepsPerKeyOrder: with Ordered, 8 workers whose
// processing times vary, records of 40 keys spread over 2000 messages
// reach the sink in queue order, and so in order per key.
func TestPipeline_OrderedKeepsPerKeyOrder(t *testing.T) {
	const msgs, perMsg, keys = 2000, 5, 40
	var payloads []string
	next := map[int]int{} // per key, the next sequence number
	for m := range msgs {
		var b strings.Builder
		for i := range perMsg {
			k := (m*7 + i*13) % keys
			fmt.Fprintf(&b, `{"key":%d,"n":%d}`+"\n", k, next[k])
			next[k]++
		}
		payloads = append(payloads, b.String())
	}
	src := newFakeSource(payloads...)
	snk := &orderSink{}
	o := opts(nil)
	o.Workers, o.Ordered, o.ChunkRecords, o.BatchSize = 8, true, 20, 100
	p := pipeline.New(src, &fakeDLQ{}, jitter{}, snk, o)
	stop := start(t, p)
	waitFor(t, "every message acked", func() bool { _, a, _ := src.counts(); return a == msgs })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(snk.recs) != msgs*perMsg {
		t.Fatalf("sink got %d records, want %d", len(snk.recs), msgs*perMsg)
	}
	seen := map[int]int{}
	for i, r := range snk.recs {
		var v struct{ Key, N int }
		if err := json.Unmarshal(r.Data, &v); err != nil {
			t.Fatal(err)
		}
		if v.N != seen[v.Key] {
			t.Fatalf("record %d: key %d number %d arrived when %d was due", i, v.Key, v.N, seen[v.Key])
		}
		seen[v.Key]++
		if i > 0 && r.ID.Seq < snk.recs[i-1].ID.Seq {
			t.Fatalf("record %d from message %d after message %d: out of queue order", i, r.ID.Seq, snk.recs[i-1].ID.Seq)
		}
	}
}
