package report_test

import (
	"testing"
	"time"

	"github.com/sluice-dev/sluice/report"
)

func TestSampler(t *testing.T) {
	ms := time.Millisecond
	s := report.NewSampler(time.Second)

	s.Observe(2*ms, 2*ms, 2*ms, 100*ms)
	got := s.Take(time.Second, 10, false)
	if got.Published != 10 || got.Drained != 4 || got.Latency != 4 || !near(got.P50, 2*ms) || !near(got.P99, 100*ms) {
		t.Fatalf("first sample %+v", got)
	}

	// A second with nothing drained has no latency.
	got = s.Take(2*time.Second, 25, false)
	if got.Published != 15 || got.Drained != 0 || got.Latency != 0 || got.P50 != 0 {
		t.Fatalf("empty sample %+v", got)
	}

	s.Observe(5 * ms)
	s.Take(3*time.Second, 30, false)
	// A last sample 100 ms after the previous one is merged into it.
	s.Observe(7*ms, 7*ms)
	got = s.Take(3*time.Second+100*ms, 31, true)
	if got.At != 3*time.Second+100*ms || got.Published != 6 || got.Drained != 3 || got.Latency != 3 || !near(got.P50, 7*ms) {
		t.Fatalf("merged last sample %+v", got)
	}
	if n := len(s.Samples()); n != 3 {
		t.Fatalf("%d samples, want 3 (the short last one merged)", n)
	}

	// A last sample long enough stands on its own.
	s.Observe(time.Hour * 2) // clamped to the histogram's range
	got = s.Take(4*time.Second, 31, true)
	if got.Published != 0 || got.Drained != 1 || got.P50 < 59*time.Minute {
		t.Fatalf("last sample %+v", got)
	}
	if n := len(s.Samples()); n != 4 {
		t.Fatalf("%d samples, want 4", n)
	}
}

// near reports whether got is within the histogram's precision (0.1%) of
// want.
func near(got, want time.Duration) bool {
	d := got - want
	return d >= -want/1000 && d <= want/1000
}
