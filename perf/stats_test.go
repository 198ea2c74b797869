package perf_test

import (
	"math"
	"testing"

	"github.com/sluice-dev/sluice/perf"
)

func TestSummarize(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name          string
		in            []float64
		n             int
		med, min, max float64
		spread        float64
	}{
		{"one", []float64{5}, 1, 5, 5, 5, 0},
		{"odd unsorted", []float64{3, 1, 2}, 3, 2, 1, 3, 1},
		{"even takes the mean of the middle two", []float64{4, 1, 3, 2}, 4, 2.5, 1, 4, 1.2},
		{"NaNs ignored", []float64{nan, 10, nan, 20, 30}, 3, 20, 10, 30, 1},
		{"duplicates", []float64{7, 7, 7, 9}, 4, 7, 7, 9, 2.0 / 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			s := perf.Summarize(tc.in)
			if s.N != tc.n || s.Median != tc.med || s.Min != tc.min || s.Max != tc.max {
				t.Fatalf("Summarize(%v) = %+v; want n=%d median=%v min=%v max=%v", tc.in, s, tc.n, tc.med, tc.min, tc.max)
			}
			if got := s.Spread(); math.Abs(got-tc.spread) > 1e-12 {
				t.Errorf("Spread = %v; want %v", got, tc.spread)
			}
			for i := range in { // the input is not reordered
				if !(in[i] == tc.in[i] || math.IsNaN(in[i]) && math.IsNaN(tc.in[i])) {
					t.Fatalf("input modified: %v, was %v", tc.in, in)
				}
			}
		})
	}
	t.Run("empty", func(t *testing.T) {
		s := perf.Summarize(nil)
		if s.N != 0 || !math.IsNaN(s.Median) || !math.IsNaN(s.Min) || !math.IsNaN(s.Max) || !math.IsNaN(s.Spread()) {
			t.Fatalf("Summarize(nil) = %+v; want N=0 and NaNs", s)
		}
	})
}
