package load_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/load"
)

// lossyJS loses the ack (and, unless stored is set, the message) of the
// first publish of every 50th message; re-publishes go through.
type lossyJS struct {
	jetstream.JetStream
	stored bool // the lost publish still reaches the server

	mu      sync.Mutex
	seen    map[string]bool // first line's id prefix of each message published
	dropped int
}

func (l *lossyJS) PublishAsync(subj string, data []byte, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	key := string(data[:bytes.IndexByte(data, ',')]) // {"id":"<run>-<seq>"
	l.mu.Lock()
	drop := !l.seen[key] && len(l.seen)%50 == 49
	l.seen[key] = true
	if drop {
		l.dropped++
	}
	l.mu.Unlock()
	if !drop {
		return l.JetStream.PublishAsync(subj, data, opts...)
	}
	if l.stored {
		if _, err := l.JetStream.PublishAsync(subj, data, opts...); err != nil {
			return nil, err
		}
	}
	return lostAck{}, nil
}

// lostAck is a PubAckFuture that never resolves.
type lostAck struct{}

func (lostAck) Ok() <-chan *jetstream.PubAck { return nil }
func (lostAck) Err() <-chan error            { return nil }
func (lostAck) Msg() *nats.Msg               { return nil }

func TestGenerate_LostAcks(t *testing.T) {
	for _, c := range []struct {
		name            string
		stored, noMsgID bool
	}{
		{"message lost", false, false},
		{"ack lost, deduplicated by msg id", true, false},
		{"ack lost, no msg id", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			js := &lossyJS{JetStream: startJS(t), stored: c.stored, seen: map[string]bool{}}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := load.Generate(ctx, js, load.GenOptions{
				Count: 500, Publishers: 2, MaxPending: 16, AckTimeout: 300 * time.Millisecond, NoMsgID: c.noMsgID,
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			js.mu.Lock()
			dropped := int64(js.dropped)
			js.mu.Unlock()
			if dropped != 10 || res.Published != 500 || res.Failed != 0 || res.Retries < dropped {
				t.Fatalf("dropped %d, result %+v", dropped, res)
			}
			r := verifyStream(t, js, "INGEST", "ingest.load", res)
			if r.Lost != 0 || r.Received != 500 {
				t.Fatalf("report = %+v", r)
			}
			switch {
			case c.noMsgID && (r.Duplicates < dropped || r.Duplicates > res.Retries):
				t.Fatalf("without msg ids: %d duplicates, want %d..%d", r.Duplicates, dropped, res.Retries)
			case !c.noMsgID && r.Duplicates != 0:
				t.Fatalf("%d duplicates despite msg ids", r.Duplicates)
			}
		})
	}
}
