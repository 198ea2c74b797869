package status

import (
	"math"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// snapshot is the part of one Gather that the status report reads.
type snapshot struct {
	at time.Time
	// vals holds every counter and gauge, summed over its series, by name.
	vals map[string]float64
	// byLabel holds, for families with one label, each series' value by
	// the label's value.
	byLabel map[string]map[string]float64
	// hists holds histograms, summed over their series.
	hists map[string]hist
}

// hist is a cumulative histogram: counts[i] observations <= bounds[i].
type hist struct {
	bounds []float64
	counts []float64
	total  float64
}

func takeSnapshot(at time.Time, fams []*dto.MetricFamily) *snapshot {
	s := &snapshot{at: at, vals: map[string]float64{}, byLabel: map[string]map[string]float64{}, hists: map[string]hist{}}
	for _, f := range fams {
		name := f.GetName()
		for _, m := range f.GetMetric() {
			var v float64
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				v = m.GetUntyped().GetValue()
			case dto.MetricType_HISTOGRAM:
				s.addHist(name, m.GetHistogram())
				continue
			default:
				continue
			}
			s.vals[name] += v
			if l := m.GetLabel(); len(l) == 1 {
				if s.byLabel[name] == nil {
					s.byLabel[name] = map[string]float64{}
				}
				s.byLabel[name][l[0].GetValue()] += v
			}
		}
	}
	return s
}

func (s *snapshot) addHist(name string, h *dto.Histogram) {
	cur, ok := s.hists[name]
	if !ok {
		for _, b := range h.GetBucket() {
			cur.bounds = append(cur.bounds, b.GetUpperBound())
		}
		cur.counts = make([]float64, len(cur.bounds))
	}
	for i, b := range h.GetBucket() {
		if i < len(cur.counts) && b.GetUpperBound() == cur.bounds[i] {
			cur.counts[i] += float64(b.GetCumulativeCount())
		}
	}
	cur.total += float64(h.GetSampleCount())
	s.hists[name] = cur
}

// has reports whether the family name was exported.
func (s *snapshot) has(name string) bool {
	_, ok := s.vals[name]
	return ok
}

// delta returns the growth of counter name from old to s (all of s's value
// when old is nil; never negative: a counter reset counts from zero).
func (s *snapshot) delta(old *snapshot, name string) float64 {
	v := s.vals[name]
	if old == nil {
		return v
	}
	if d := v - old.vals[name]; d >= 0 {
		return d
	}
	return v
}

// deltaByLabel is delta for each label value of name.
func (s *snapshot) deltaByLabel(old *snapshot, name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range s.byLabel[name] {
		var o float64
		if old != nil {
			o = old.byLabel[name][k]
		}
		if d := v - o; d >= 0 {
			out[k] = d
		} else {
			out[k] = v
		}
	}
	return out
}

// quantiles returns the q-quantiles of the observations histogram name
// gained since old (all of them when old is nil), interpolated linearly
// within a bucket as Prometheus' histogram_quantile does, and how many
// observations that was. With no observations the quantiles are NaN.
func (s *snapshot) quantiles(old *snapshot, name string, qs ...float64) ([]float64, float64) {
	h := s.hists[name]
	counts := slices.Clone(h.counts)
	total := h.total
	if old != nil {
		if o, ok := old.hists[name]; ok && len(o.counts) == len(counts) && o.total <= total {
			for i := range counts {
				counts[i] -= o.counts[i]
			}
			total -= o.total
		}
	}
	out := make([]float64, len(qs))
	for i, q := range qs {
		out[i] = bucketQuantile(q, h.bounds, counts, total)
	}
	return out, total
}

func bucketQuantile(q float64, bounds, counts []float64, total float64) float64 {
	if total <= 0 || len(bounds) == 0 {
		return math.NaN()
	}
	rank := q * total
	prevBound, prevCount := 0.0, 0.0
	for i, b := range bounds {
		if counts[i] >= rank {
			if counts[i] == prevCount {
				return b
			}
			return prevBound + (b-prevBound)*(rank-prevCount)/(counts[i]-prevCount)
		}
		prevBound, prevCount = b, counts[i]
	}
	// Above the highest bound (the +Inf bucket): the highest bound is all
	// that can be said, as histogram_quantile answers.
	return bounds[len(bounds)-1]
}
