package backoff_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/backoff"
)

func TestPolicy_Delay(t *testing.T) {
	p := backoff.Policy{Min: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	for _, tc := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{0, 10 * time.Millisecond, 10 * time.Millisecond},
		{1, 10 * time.Millisecond, 10 * time.Millisecond},
		{2, 10 * time.Millisecond, 20 * time.Millisecond},
		{3, 10 * time.Millisecond, 40 * time.Millisecond},
		{4, 10 * time.Millisecond, 80 * time.Millisecond},
		{5, 10 * time.Millisecond, 80 * time.Millisecond},
		{1000, 10 * time.Millisecond, 80 * time.Millisecond},
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(tc.n)
			if d < tc.lo || d > tc.hi {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", tc.n, d, tc.lo, tc.hi)
			}
			seen[d] = true
		}
		if tc.hi > tc.lo && len(seen) < 10 {
			t.Errorf("Delay(%d): only %d distinct values in 200 draws: no jitter?", tc.n, len(seen))
		}
	}
}

func TestPolicy_DelayMaxBelowMin(t *testing.T) {
	p := backoff.Policy{Min: time.Second, Max: time.Millisecond}
	if d := p.Delay(3); d != time.Second {
		t.Fatalf("Delay = %v, want the floor 1s", d)
	}
}

func TestSleep(t *testing.T) {
	if err := backoff.Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := backoff.Sleep(ctx, time.Hour); err != context.Canceled {
		t.Fatalf("Sleep on a cancelled ctx = %v, want context.Canceled", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("Sleep on a cancelled ctx waited")
	}
}
