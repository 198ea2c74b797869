package fault

import "time"

// SetClock replaces the rate limiter's clock until the returned func is
// called.
func SetClock(f func() time.Duration) (restore func()) {
	old := clock
	clock = f
	return func() { clock = old }
}
