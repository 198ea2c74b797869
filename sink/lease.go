package sink

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-dev/sluice/wire"
)

// lease is one connection to the drainer with a reference count. It is
// created by install, handed to writers by acquire and closed by the release
// that drops the last reference of a retired lease; nothing else closes conn.
type lease struct {
	conn net.Conn  // immutable
	gen  uint64    // immutable; increases with every installed connection
	born time.Time // immutable; when the connection was installed

	// wmu serialises writes to conn so frames never interleave. Held across
	// the Write: this lock exists to serialise that I/O. Ordered before
	// Writer.mu.
	wmu sync.Mutex

	// broken is set once a write or read on conn failed; writers queued on
	// wmu then skip it instead of piling more bytes into a dead socket.
	broken atomic.Bool

	refs    int  // guarded by Writer.mu; the owner's reference (while current) plus one per writer
	retired bool // guarded by Writer.mu; set when the lease stops being current; never cleared

	gone     chan struct{} // closed once broken is set (markBroken)
	goneOnce sync.Once

	// Acked framing only.
	rd   *wire.Reader     // owned by the lease's ack reader; the handshake's reader, so nothing it buffered is lost
	lim  wire.Limits      // immutable; the limits WELCOME granted
	kick chan struct{}    // capacity 1; wakes the lease's flusher
	cs   wire.ClientState // guarded by Writer.win.mu; the session's window and ack checks
	next uint64           // guarded by Writer.win.mu; the flusher has written every window frame with a lower id
}

// markBroken records that a write or read on l's connection failed, and
// wakes the goroutines that wait on it.
func (l *lease) markBroken() {
	l.broken.Store(true)
	l.goneOnce.Do(func() { close(l.gone) })
}

// acquire returns the current lease with a reference taken, waiting while
// there is none. It returns ctx.Err() when ctx ends first and ErrClosed once
// the Writer is closed. The caller must release the lease.
func (w *Writer) acquire(ctx context.Context) (*lease, error) {
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return nil, ErrClosed
		}
		if l := w.cur; l != nil {
			l.refs++
			w.mu.Unlock()
			return l, nil
		}
		ready := w.ready
		w.mu.Unlock()

		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-w.done:
			return nil, ErrClosed
		}
	}
}

// release drops one reference to l. The release that drops the last
// reference of a retired lease closes its connection, outside the lock.
func (w *Writer) release(l *lease) {
	w.mu.Lock()
	l.refs--
	last := l.refs == 0 && l.retired
	if last {
		delete(w.live, l)
	}
	w.mu.Unlock()
	if last {
		_ = l.conn.Close() // the reader goroutine sees net.ErrClosed and exits
	}
}

// isCurrent reports whether l is still the current lease: the generation
// check that keeps a stale writer from retiring a fresh connection.
// Called with w.mu held.
func (w *Writer) isCurrent(l *lease) bool {
	return w.cur != nil && w.cur.gen == l.gen
}
