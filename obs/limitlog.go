package obs

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultLogEvery is LimitedLog's interval when Every is zero.
const DefaultLogEvery = time.Second

// LimitedLog rate-limits log lines by kind (a reason, a cause): at most
// one line of a kind per Every, and the next line logged carries how many
// were suppressed in between (KeySuppressed). The zero value is ready to
// use; it is safe for concurrent use.
type LimitedLog struct {
	// Every is the least time between two lines of one kind. Zero:
	// DefaultLogEvery.
	Every time.Duration
	kinds sync.Map // kind -> *logKind
}

type logKind struct {
	mu         sync.Mutex
	next       time.Time // guarded by mu
	suppressed int       // guarded by mu
}

// Log logs msg with args on l at level unless a line of kind was logged
// less than Every ago.
func (ll *LimitedLog) Log(l *slog.Logger, kind string, level slog.Level, msg string, args ...any) {
	v, _ := ll.kinds.LoadOrStore(kind, &logKind{})
	k := v.(*logKind)
	now := time.Now()
	k.mu.Lock()
	if now.Before(k.next) {
		k.suppressed++
		k.mu.Unlock()
		return
	}
	every := ll.Every
	if every <= 0 {
		every = DefaultLogEvery
	}
	k.next = now.Add(every)
	n := k.suppressed
	k.suppressed = 0
	k.mu.Unlock()
	if n > 0 {
		args = append(args, KeySuppressed, n)
	}
	l.Log(context.Background(), level, msg, args...)
}
