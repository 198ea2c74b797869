package status

import "time"

// SampleAt takes a snapshot as if the ticker fired at now.
func (s *Sampler) SampleAt(now time.Time) { s.sample(now) }
