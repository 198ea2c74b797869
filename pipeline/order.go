package pipeline

import (
	"context"
	"sync"
)

// sequencer hands chunks to the sink in the order the fetcher cut them
// (Options.Ordered): each chunk holds a ticket, taken in dispatch order,
// and its worker waits for the ticket's turn before its first Send. The
// workers still process chunks in parallel; only the hand-overs to the
// sink, which copy and enqueue, are serialised. Since the sink keeps the
// order of Sends on the wire (one connection at a time; the acked framing
// re-sends its window in frame order after a reconnect), records reach
// the drainer in queue order, and so, for any key, in order per key.
//
// Every ticket is finished exactly once, whether its chunk was sent, had
// nothing to send, failed, or never reached a worker, so the turn always
// moves on: the smallest unfinished ticket is always free to go.
type sequencer struct {
	mu     sync.Mutex
	next   uint64                   // guarded by mu; the ticket whose turn it is
	issued uint64                   // owned by the fetch loop: the next ticket to issue
	done   map[uint64]bool          // guarded by mu; finished tickets after next
	wait   map[uint64]chan struct{} // guarded by mu; closed when that ticket's turn comes
}

func newSequencer() *sequencer {
	return &sequencer{done: map[uint64]bool{}, wait: map[uint64]chan struct{}{}}
}

// ticket issues the next ticket; called by the fetch loop only.
func (s *sequencer) ticket() uint64 {
	t := s.issued
	s.issued++
	return t
}

// turn blocks until it is t's turn or ctx ends.
func (s *sequencer) turn(ctx context.Context, t uint64) error {
	s.mu.Lock()
	if s.next == t {
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	s.wait[t] = ch
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.wait, t)
		s.mu.Unlock()
		return ctx.Err()
	}
}

// finish ends ticket t and passes the turn on.
func (s *sequencer) finish(t uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t != s.next {
		s.done[t] = true
		return
	}
	s.next++
	for s.done[s.next] {
		delete(s.done, s.next)
		s.next++
	}
	if ch, ok := s.wait[s.next]; ok {
		delete(s.wait, s.next)
		close(ch)
	}
}
