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
// except for its internal fire counter.
type Action struct {
	Kind  Kind
	Min   time.Duration // Delay: the delay, or the low end of a random range
	Max   time.Duration // Delay: the high end of a random range; 0 = fixed
	Prob  float64       // Error, Close: probability in (0, 1]; 0 means 1
	Count uint64        // fire at most Count times; 0 = unlimited

	fired atomic.Uint64
}

func (a *Action) fire(ctx context.Context, p *Point) error {
	if a.Prob > 0 && a.Prob < 1 && rand.Float64() >= a.Prob {
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

// Action returns the point's current action, or nil when it is off.
func (p *Point) Action() *Action { return p.act.Load() }
