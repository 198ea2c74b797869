package fault_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/fault"
)

func TestParseAction(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "delay(5ms)", want: "delay(5ms)"},
		{in: "delay(1ms,10ms)", want: "delay(1ms,10ms)"},
		{in: "error(0.25)", want: "error(0.25)"},
		{in: "error()", want: "error(1)"},
		{in: "close(1)*3", want: "close(1)*3"},
		{in: "off", want: "off"},
		{in: "delay(fast)", err: `bad duration "fast"`},
		{in: "delay(10ms,1ms)", err: "bad range end"},
		{in: "error(2)", err: "probability must be in (0, 1]"},
		{in: "explode(1)", err: `unknown action "explode"`},
		{in: "delay", err: "want delay(D)"},
		{in: "error(1)*0", err: "count after '*'"},
		{in: "delay(5ms)@10/s", want: "delay(5ms)@10/s"},
		{in: "error(0.5)@3/m*7", want: "error(0.5)@3/m*7"},
		{in: "close(1) *2 @1/h", want: "close(1)@1/h*2"},
		{in: "error()@5/100ms", want: "error(1)@5/100ms"},
		{in: "error()@5/2s", want: "error(1)@5/2s"},
		{in: "error()@0/s", err: "rate after '@'"},
		{in: "error()@5", err: "rate after '@'"},
		{in: "error()@5/fortnight", err: `rate period "fortnight"`},
		{in: "error()@5/-1s", err: "rate period"},
		{in: "error()@1/s@2/s", err: "given once"},
		{in: "error()*1*2", err: "given once"},
		{in: "error()x", err: "unexpected"},
	} {
		a, err := fault.ParseAction(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseAction(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || a.String() != tc.want {
			t.Errorf("ParseAction(%q) = %v, %v; want %s", tc.in, a, err, tc.want)
			continue
		}
		// String's output parses back to the same action.
		if b, err := fault.ParseAction(a.String()); err != nil || b.String() != tc.want {
			t.Errorf("round trip of %q: %v, %v", tc.want, b, err)
		}
	}
}

func TestPoint_Hit(t *testing.T) {
	p := fault.Register("fault.test.hit", "test")
	ctx := context.Background()
	base := p.Hits() // points are process-wide: -count=N runs share them
	if err := p.Hit(ctx); err != nil || p.Hits() != base {
		t.Fatalf("off point: %v, hits %d", err, p.Hits()-base)
	}
	if err := fault.Apply("fault.test.hit=error(1)*2"); err != nil {
		t.Fatal(err)
	}
	var errs int
	for range 5 {
		if errors.Is(p.Hit(ctx), fault.ErrInjected) {
			errs++
		}
	}
	if errs != 2 || p.Hits()-base != 2 {
		t.Fatalf("error(1)*2 fired %d times (hits %d), want 2", errs, p.Hits()-base)
	}
	if err := fault.Apply("fault.test.hit=close(1)"); err != nil || !errors.Is(p.Hit(ctx), fault.ErrInjectedClose) {
		t.Fatalf("close: %v", err)
	}
	if err := fault.Apply("fault.test.hit=delay(1h)"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := p.Hit(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delay under a cancelled ctx = %v, want the ctx error", err)
	}
	fault.Reset()
	if p.Action() != nil {
		t.Fatal("Reset left the point on")
	}
	if err := fault.Apply("no.such.point=delay(1ms)"); !errors.Is(err, fault.ErrUnknownPoint) {
		t.Fatalf("unknown point err = %v", err)
	}
	if err := fault.Apply("nonsense"); err == nil {
		t.Fatal("spec without '=' accepted")
	}
}

func TestAction_RateLimit(t *testing.T) {
	var now time.Duration
	defer fault.SetClock(func() time.Duration { return now })()
	p := fault.Register("fault.test.rate", "test")
	defer p.Set(nil)
	a, err := fault.ParseAction("error(1)@5/s")
	if err != nil {
		t.Fatal(err)
	}
	p.Set(a)
	base := p.Hits()
	ctx := context.Background()
	fires := func(n int) int {
		t.Helper()
		var k int
		for range n {
			if errors.Is(p.Hit(ctx), fault.ErrInjected) {
				k++
			}
		}
		return k
	}
	if got := fires(100); got != 5 {
		t.Fatalf("burst at t=0: %d fires, want 5 (the limit)", got)
	}
	now += 199 * time.Millisecond
	if got := fires(10); got != 0 {
		t.Fatalf("at t=199ms: %d fires, want 0 (one slot frees every 200ms)", got)
	}
	now += time.Millisecond
	if got := fires(10); got != 1 {
		t.Fatalf("at t=200ms: %d fires, want 1", got)
	}
	now += time.Hour
	if got := fires(100); got != 5 {
		t.Fatalf("after an idle hour: %d fires, want a burst of 5, not more", got)
	}
	if p.Hits()-base != 11 {
		t.Fatalf("Hits grew by %d, want 11", p.Hits()-base)
	}

	// With a count too: the count caps the total, the rate the pace.
	b, _ := fault.ParseAction("error(1)@5/s*7")
	p.Set(b)
	now += time.Hour
	if got := fires(100); got != 5 {
		t.Fatalf("rate+count burst: %d, want 5", got)
	}
	now += time.Hour
	if got := fires(100); got != 2 {
		t.Fatalf("rate+count after refill: %d, want 2 (count 7 reached)", got)
	}
}

func TestPoint_Swap(t *testing.T) {
	p := fault.Register("fault.test.swap", "test")
	a, _ := fault.ParseAction("delay(1ms)")
	if old := p.Swap(a); old != nil {
		t.Fatalf("Swap on an off point returned %v", old)
	}
	if old := p.Swap(nil); old != a || p.Action() != nil {
		t.Fatalf("Swap(nil) returned %v, action now %v", old, p.Action())
	}
}

func TestPoint_HitOffDoesNotAllocate(t *testing.T) {
	p := fault.Register("fault.test.off.alloc", "test")
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { _ = p.Hit(ctx) }); n != 0 {
		t.Fatalf("Hit on an off point allocates %v times", n)
	}
}

// BenchmarkPoint_HitOff and BenchmarkAtomicPointerLoad run the same loop:
// one over an off point's Hit, one over a bare atomic.Pointer Load and nil
// check. Equal ns/op shows an off point costs one atomic load (Hit inlines).
func BenchmarkPoint_HitOff(b *testing.B) {
	p := fault.Register("fault.bench.off", "bench")
	ctx := context.Background()
	var errs int
	for b.Loop() {
		if p.Hit(ctx) != nil {
			errs++
		}
	}
	if errs != 0 {
		b.Fatal("off point fired")
	}
}

func BenchmarkAtomicPointerLoad(b *testing.B) {
	var ptr atomic.Pointer[fault.Action]
	var errs int
	for b.Loop() {
		if ptr.Load() != nil {
			errs++
		}
	}
	if errs != 0 {
		b.Fatal("nil pointer loaded as non-nil")
	}
}

// BenchmarkPoint_HitOffParallel shows off points do not contend: the load
// reads a cache line no one writes.
func BenchmarkPoint_HitOffParallel(b *testing.B) {
	p := fault.Register("fault.bench.off", "bench")
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = p.Hit(ctx)
		}
	})
}

func TestIsInjected(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"error", fault.ErrInjected, true},
		{"close", fault.ErrInjectedClose, true},
		{"wrapped error", errors.Join(errors.New("write to s.sock"), fault.ErrInjected), true},
		{"wrapped close", errors.Join(errors.New("write to s.sock"), fault.ErrInjectedClose), true},
		{"delay cut short", ctx.Err(), false},
		{"other", errors.New("broken pipe"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fault.IsInjected(tc.err); got != tc.want {
				t.Errorf("IsInjected(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	// What Hit returns, as the callers see it.
	p := fault.Register("fault.test.is_injected", "TestIsInjected")
	t.Cleanup(func() { p.Set(nil) })
	for _, spec := range []string{"error(1)", "close(1)"} {
		a, err := fault.ParseAction(spec)
		if err != nil {
			t.Fatal(err)
		}
		p.Set(a)
		if err := p.Hit(context.Background()); !fault.IsInjected(err) {
			t.Errorf("%s: Hit = %v, IsInjected false", spec, err)
		}
	}
	a, _ := fault.ParseAction("delay(1h)")
	p.Set(a)
	if err := p.Hit(ctx); err == nil || fault.IsInjected(err) {
		t.Errorf("delay with ended ctx: Hit = %v, want ctx.Err() and IsInjected false", err)
	}
}
