package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/process"
	"github.com/sluice-dev/sluice/record"
)

// countedMsg is a message that knows how often it was delivered.
type countedMsg struct {
	fakeMsg
	delivered uint64
}

func (m *countedMsg) NumDelivered() uint64 { return m.delivered }

// redeliverSource hands out its messages and, after a nak, the same
// message again with its delivery count up, as JetStream does.
type redeliverSource struct {
	mu    sync.Mutex
	queue []*countedMsg
	acked map[uint64]uint64 // seq → delivery count when acked
}

func (s *redeliverSource) Fetch(ctx context.Context, max int, wait time.Duration) ([]pipeline.Message, error) {
	s.mu.Lock()
	var out []pipeline.Message
	for len(s.queue) > 0 && len(out) < max {
		m := s.queue[0]
		s.queue = s.queue[1:]
		m.delivered++
		out = append(out, m)
	}
	s.mu.Unlock()
	if len(out) == 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

func (s *redeliverSource) Ack(msgs []pipeline.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.acked[m.ID().Seq] = m.(*countedMsg).delivered
	}
	return nil
}

func (s *redeliverSource) Nak(msgs []pipeline.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.queue = append(s.queue, m.(*countedMsg))
	}
	return nil
}

// poisonSink fails every frame that holds a record containing "poison",
// as a crash while sending it would, and delivers the others.
type poisonSink struct{}

func (poisonSink) Send(_ context.Context, recs []record.Record, done func(error)) error {
	for _, r := range recs {
		if strings.Contains(string(r.Data), "poison") {
			return errors.New("the drainer connection died again")
		}
	}
	done(nil)
	return nil
}

// TestPipeline_PoisonMessageEndsOnDeadLetter: a message that fails every
// time is redelivered MaxDeliver times, then dead-lettered whole with
// reason max_deliver and acked; its neighbours are delivered, since a
// redelivered message is processed in a chunk of its own.
func TestPipeline_PoisonMessageEndsOnDeadLetter(t *testing.T) {
	src := &redeliverSource{acked: map[uint64]uint64{}}
	for i, d := range []string{`{"ok":1}`, `{"poison":true}`, `{"ok":2}`} {
		src.queue = append(src.queue, &countedMsg{fakeMsg: fakeMsg{seq: uint64(i + 1), data: []byte(d)}})
	}
	dlq := &fakeDLQ{}
	o := opts(nil)
	o.MaxDeliver = 3
	p := pipeline.New(src, dlq, process.Validator{}, poisonSink{}, o)
	stop := start(t, p)
	waitFor(t, "all acked", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return len(src.acked) == 3
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// 1 is alone in the first fetch; 3 shares 2's chunk once, then, as a
	// suspect, gets a chunk of its own and is delivered.
	if src.acked[1] != 1 || src.acked[3] > 2 || src.acked[2] != 4 {
		t.Fatalf("acked after deliveries %v; want 1 at once, 3 by its 2nd delivery, 2 after its 4th", src.acked)
	}
	if len(dlq.got) != 1 || !strings.HasPrefix(dlq.got[0], `2/-1 {"poison":true}: max_deliver: delivered 4 times, more than queue.max_deliver (3)`) {
		t.Fatalf("dead letters = %q", dlq.got)
	}
}

// panicker panics on records holding "boom".
type panicker struct{}

func (panicker) CheckMessage([]byte) error  { return nil }
func (panicker) NewWorker() pipeline.Worker { return panicker{} }
func (panicker) Process(in pipeline.Input, buf []byte) ([]byte, []byte, error) {
	if strings.Contains(string(in.Data), "boom") {
		panic("kaboom")
	}
	return in.Data, buf, nil
}

// TestPipeline_PanicDeadLettersTheRecord: a record whose processing
// panics is dead-lettered with reason panic; the worker and the rest of
// the message go on.
func TestPipeline_PanicDeadLettersTheRecord(t *testing.T) {
	src := newFakeSource("{\"a\":1}\n{\"boom\":1}\n{\"a\":2}", `{"a":3}`)
	dlq, snk := &fakeDLQ{}, &gateSink{}
	p := pipeline.New(src, dlq, panicker{}, snk, opts(nil))
	stop := start(t, p)
	waitFor(t, "acks", func() bool { _, a, _ := src.counts(); return a == 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(snk.delivered()); n != 3 {
		t.Fatalf("delivered %d records, want 3", n)
	}
	if len(dlq.got) != 1 || dlq.got[0] != `1/1 {"boom":1}: panic: processing panicked: kaboom` {
		t.Fatalf("dead letters = %q", dlq.got)
	}
}
