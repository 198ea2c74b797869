package queue

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SetLingerGap replaces lingerGap for s. Call it before the first Fetch.
func SetLingerGap(s *Source, d time.Duration) { s.gap = d }

// DelayPullClose makes every pull of s close its message channel d after
// the jetstream package closed it, as a loaded machine's scheduler may:
// the pause between a pull's last message and its end then outlasts
// lingerGap. Call it before the first Fetch.
func DelayPullClose(s *Source, d time.Duration) {
	s.cons = slowCloseConsumer{Consumer: s.cons, delay: d}
}

type slowCloseConsumer struct {
	jetstream.Consumer
	delay time.Duration
}

func (c slowCloseConsumer) Fetch(n int, opts ...jetstream.FetchOpt) (jetstream.MessageBatch, error) {
	b, err := c.Consumer.Fetch(n, opts...)
	if err != nil {
		return nil, err
	}
	out := make(chan jetstream.Msg)
	go func() {
		for m := range b.Messages() {
			out <- m
		}
		time.Sleep(c.delay)
		close(out)
	}()
	return slowBatch{MessageBatch: b, msgs: out}, nil
}

type slowBatch struct {
	jetstream.MessageBatch
	msgs chan jetstream.Msg
}

func (b slowBatch) Messages() <-chan jetstream.Msg { return b.msgs }
