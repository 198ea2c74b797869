package report

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histogram bounds of a Sampler, in microseconds: 1 µs to 1 h, 3
// significant digits. Longer latencies are clamped.
const (
	sampleHistMin    = 1
	sampleHistMax    = int64(time.Hour / time.Microsecond)
	sampleHistDigits = 3
)

// Sampler cuts a run into Samples. One goroutine (the reader of the
// drainer's output) reports each record it drained with Observe; another
// (the sampling loop) ends each interval with Take. Observe and Take may run
// concurrently; Take and Samples must be called from one goroutine.
type Sampler struct {
	interval time.Duration

	mu      sync.Mutex
	drained int64                   // guarded by mu: records drained in the current interval
	hist    *hdrhistogram.Histogram // guarded by mu: their latencies, µs

	// Owned by the goroutine that calls Take.
	prev    *hdrhistogram.Histogram // the previous interval's latencies, for merging a short last sample
	lastPub int64                   // the published total at the previous Take
	samples []Sample
}

// NewSampler returns a Sampler for intervals of the given width (0 = one
// second). The width only decides when a last sample is short enough to be
// merged into the one before (see Take).
func NewSampler(interval time.Duration) *Sampler {
	if interval <= 0 {
		interval = time.Second
	}
	return &Sampler{
		interval: interval,
		hist:     hdrhistogram.New(sampleHistMin, sampleHistMax, sampleHistDigits),
		prev:     hdrhistogram.New(sampleHistMin, sampleHistMax, sampleHistDigits),
	}
}

// Observe counts one drained record per latency given (publish to drained)
// in the current interval.
func (s *Sampler) Observe(latencies ...time.Duration) {
	if len(latencies) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drained += int64(len(latencies))
	for _, d := range latencies {
		us := min(max(int64(d/time.Microsecond), sampleHistMin), sampleHistMax)
		_ = s.hist.RecordValue(us)
	}
}

// Take ends the current interval at `at` (since the run started), with
// published the run's total of records acknowledged by the queue so far,
// and returns its sample. With last set (the run's final sample), a sample
// shorter than a quarter of an interval is merged into the previous one
// rather than charted as a spike: the previous sample is replaced by the
// merged one, which is returned.
func (s *Sampler) Take(at time.Duration, published int64, last bool) Sample {
	merge := last && len(s.samples) > 0 && at-s.samples[len(s.samples)-1].At < s.interval/4
	s.mu.Lock()
	smp := Sample{At: at, Published: published - s.lastPub, Drained: s.drained}
	h := s.hist
	if merge {
		prev := s.samples[len(s.samples)-1]
		s.samples = s.samples[:len(s.samples)-1]
		smp.Published += prev.Published
		smp.Drained += prev.Drained
		s.prev.Merge(h)
		h = s.prev
	}
	smp.Latency = h.TotalCount()
	if smp.Latency > 0 {
		smp.P50 = time.Duration(h.ValueAtQuantile(50)) * time.Microsecond
		smp.P99 = time.Duration(h.ValueAtQuantile(99)) * time.Microsecond
	}
	s.drained = 0
	s.hist, s.prev = s.prev, s.hist
	s.hist.Reset()
	s.mu.Unlock()
	s.lastPub = published
	s.samples = append(s.samples, smp)
	return smp
}

// Samples returns the samples taken so far, in time order.
func (s *Sampler) Samples() []Sample { return s.samples }
