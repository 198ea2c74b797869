package pipeline

import (
	"context"
	"sync"
)

// budget bounds the records and bytes in flight: fetched from the source but
// not yet settled (acked or nak'ed). The fetcher waits for room before each
// fetch, then adds the batch chunk by chunk, so the bound can be exceeded by
// at most one batch; the settler releases each chunk's share as it settles
// it.
type budget struct {
	maxRecs  int64
	maxBytes int64

	mu    sync.Mutex
	recs  int64         // guarded by mu
	bytes int64         // guarded by mu
	wake  chan struct{} // guarded by mu; closed and replaced on every release
}

func newBudget(maxRecs, maxBytes int64) *budget {
	return &budget{maxRecs: maxRecs, maxBytes: maxBytes, wake: make(chan struct{})}
}

// waitRoom blocks until both counts are under their limits, or ctx ends.
func (b *budget) waitRoom(ctx context.Context) error {
	for {
		b.mu.Lock()
		if b.recs < b.maxRecs && b.bytes < b.maxBytes {
			b.mu.Unlock()
			return nil
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *budget) add(recs, bytes int64) {
	b.mu.Lock()
	b.recs += recs
	b.bytes += bytes
	b.mu.Unlock()
}

func (b *budget) release(recs, bytes int64) {
	b.mu.Lock()
	b.recs -= recs
	b.bytes -= bytes
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}

// load returns the current counts.
func (b *budget) load() (recs, bytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.recs, b.bytes
}
