// Package backoff is the one capped exponential backoff with jitter that
// every retry loop in sluice uses: the sink's dialer, the pipeline's
// fetcher, the drainer's accept loop and the load generator's publishers.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is a capped exponential backoff, jittered uniformly between a
// floor (Min) and the current cap (Min doubled per failure, at most Max).
// The zero value is not useful; set both fields.
type Policy struct {
	Min time.Duration // the shortest wait, and the floor of every jittered wait; > 0
	Max time.Duration // the cap of every wait; values below Min mean Min
}

// Delay returns the wait after the n-th consecutive failure (n ≥ 1): a
// uniformly random duration between Min and min(Max, Min·2^(n-1)). The
// floor of Min means a caller never spins; the jitter spreads callers that
// failed together. n < 1 counts as 1.
func (p Policy) Delay(n int) time.Duration {
	lo, hi := p.Min, max(p.Max, p.Min)
	ceil := hi
	if n < 1 {
		n = 1
	}
	if n-1 < 62 {
		if c := lo << (n - 1); c > 0 && c>>(n-1) == lo && c < hi {
			ceil = c
		}
	}
	if ceil <= lo {
		return lo
	}
	return lo + rand.N(ceil-lo+1)
}

// Sleep waits for d or until ctx ends, whichever is first, and returns
// ctx.Err() in the second case.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
