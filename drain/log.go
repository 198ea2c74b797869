package drain

import (
	"sync"
	"time"
)

// logEvery is the least time between two logs of one rate-limited kind.
const logEvery = time.Second

// limiter rate-limits one kind of log line: at most one per logEvery, and
// the next one carries how many were suppressed in between.
type limiter struct {
	mu         sync.Mutex
	next       time.Time // guarded by mu
	suppressed int       // guarded by mu
}

// allow reports whether to log now, and how many were suppressed since the
// last line logged.
func (l *limiter) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	l.next = now.Add(logEvery)
	n := l.suppressed
	l.suppressed = 0
	return true, n
}
