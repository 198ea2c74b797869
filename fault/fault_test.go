package fault_test

import (
	"context"
	"errors"
	"strings"
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
		}
	}
}

func TestPoint_Hit(t *testing.T) {
	p := fault.Register("fault.test.hit", "test")
	ctx := context.Background()
	if err := p.Hit(ctx); err != nil || p.Hits() != 0 {
		t.Fatalf("off point: %v, hits %d", err, p.Hits())
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
	if errs != 2 || p.Hits() != 2 {
		t.Fatalf("error(1)*2 fired %d times (hits %d), want 2", errs, p.Hits())
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

func BenchmarkPoint_HitOff(b *testing.B) {
	p := fault.Register("fault.bench.off", "bench")
	ctx := context.Background()
	for b.Loop() {
		_ = p.Hit(ctx)
	}
}
