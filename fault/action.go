package fault

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Kind is what an Action does when it fires.
type Kind int

const (
	// Delay sleeps for Min, or for a random duration in [Min, Max] when Max > Min.
	Delay Kind = iota + 1
	// Error makes Hit return ErrInjected with probability Prob.
	Error
	// Close makes Hit return ErrInjectedClose with probability Prob.
	Close
)

// Action is what a point does when hit. An Action is immutable once set,
// except for its internal fire counter and rate-limit state.
type Action struct {
	Kind  Kind
	Min   time.Duration // Delay: the delay, or the low end of a random range
	Max   time.Duration // Delay: the high end of a random range; 0 = fixed
	Prob  float64       // Error, Close: probability in (0, 1]; 0 means 1
	Count uint64        // fire at most Count times; 0 = unlimited
	Limit uint64        // fire at most Limit times per Per; 0 = no rate limit
	Per   time.Duration // the rate limit's period; 0 with Limit > 0 means a second

	fired atomic.Uint64
	tat   atomic.Int64 // rate limit: theoretical arrival time (GCRA), in clock() nanoseconds
}

// epoch anchors clock so it reads the monotonic clock.
var epoch = time.Now()

// clock returns monotonic time since epoch; tests replace it (export_test.go).
var clock = func() time.Duration { return time.Since(epoch) }

// allow reports whether the rate limit lets the action fire now. It is the
// generic cell rate algorithm: each fire books Per/Limit of time, and up to
// Limit fires may be booked ahead of now (a burst of Limit, then Limit per
// Per on average). Lock-free: one CAS per admitted fire.
func (a *Action) allow() bool {
	per := a.Per
	if per <= 0 {
		per = time.Second
	}
	interval := int64(per) / int64(a.Limit)
	if interval <= 0 {
		interval = 1
	}
	burst := int64(per) - interval // how far ahead of now bookings may run
	for {
		now := int64(clock())
		tat := a.tat.Load()
		start := max(tat, now)
		if start-now > burst {
			return false
		}
		if a.tat.CompareAndSwap(tat, start+interval) {
			return true
		}
	}
}

func (a *Action) fire(ctx context.Context, p *Point) error {
	if a.Prob > 0 && a.Prob < 1 && rand.Float64() >= a.Prob {
		return nil
	}
	if a.Limit > 0 && !a.allow() {
		return nil
	}
	if a.Count > 0 && a.fired.Add(1) > a.Count {
		return nil
	}
	p.hits.Add(1)
	switch a.Kind {
	case Delay:
		d := a.Min
		if a.Max > a.Min {
			d += rand.N(a.Max - a.Min + 1)
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	case Error:
		return ErrInjected
	case Close:
		return ErrInjectedClose
	}
	return nil
}

// Set installs a on the point (nil switches it off).
func (p *Point) Set(a *Action) { p.act.Store(a) }

// Swap installs a on the point (nil switches it off) and returns the action
// it replaced, nil if the point was off.
func (p *Point) Swap(a *Action) *Action { return p.act.Swap(a) }

// Action returns the point's current action, or nil when it is off.
func (p *Point) Action() *Action { return p.act.Load() }
