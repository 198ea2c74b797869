package sink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/obs"
)

// Fault points on the connection path.
var (
	beforeClose = fault.Register("sink.reconnect.before_close",
		"after the sink retired a connection (reconnect decided, new one swapped in), before the old one may be closed; a delay widens the origin race window")
	beforeWrite = fault.Register("sink.write.before",
		"before a frame is written to the drainer's socket; error = write error, close = the peer dropped the socket")
	afterWrite = fault.Register("sink.write.after",
		"after a frame was fully written; error or close makes the sink re-send it on a new connection (a duplicate)")
)

// lease is one connection to the drainer with a reference count. It is
// created by install, handed to writers by acquire and ended by the release
// that drops the last reference of a retired lease (which closes conn, or
// lets the framing close it: framing.end); nothing else closes conn.
type lease struct {
	conn net.Conn  // immutable
	gen  uint64    // immutable; increases with every installed connection
	born time.Time // immutable; when the connection was installed
	fs   any       // immutable; the framing's per-connection state (framing.handshake's result), nil for none

	// wmu serialises writes to conn so frames never interleave. Held across
	// the Write: this lock exists to serialise that I/O. No other lock is
	// taken while it is held.
	wmu sync.Mutex

	// broken is set once a write or read on conn failed; writers queued on
	// wmu then skip it instead of piling more bytes into a dead socket.
	broken atomic.Bool

	refs    int  // guarded by Writer.mu; the owner's reference (while current) plus one per writer
	retired bool // guarded by Writer.mu; set when the lease stops being current; never cleared

	gone     chan struct{} // closed once broken is set (markBroken)
	goneOnce sync.Once
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
		if w.st == statusClosed {
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

// ref takes a reference to l if it has one left (its connection is still
// open), for a goroutine that must write on l whether or not it is current.
func (w *Writer) ref(l *lease) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.live[l]; !ok {
		return false
	}
	l.refs++
	return true
}

// release drops one reference to l. The release that drops the last
// reference of a retired lease ends it, outside the lock: the framing may
// say goodbye on it (framing.end), and the connection is closed.
func (w *Writer) release(l *lease) {
	w.mu.Lock()
	l.refs--
	last := l.refs == 0 && l.retired
	if last {
		delete(w.live, l)
	}
	w.mu.Unlock()
	if last && !w.fr.end(l) {
		_ = l.conn.Close() // the framing's reader sees net.ErrClosed and exits
	}
}

// isCurrent reports whether l is still the current lease: the generation
// check that keeps a stale writer from retiring a fresh connection.
// Called with w.mu held.
func (w *Writer) isCurrent(l *lease) bool {
	return w.cur != nil && w.cur.gen == l.gen
}

// fail retires l after a failed write or read, if l is still the current
// lease (the generation check: a stale writer never retires a fresh
// connection), and asks the connector for a new one (→ broken). The caller
// holds a reference to l, or is l's reader.
func (w *Writer) fail(ctx context.Context, l *lease, reason string, err error) {
	l.markBroken()
	w.mu.Lock()
	if w.st == statusClosed || !w.isCurrent(l) {
		w.mu.Unlock()
		return
	}
	w.cur = nil
	l.retired = true
	w.ready = make(chan struct{})
	w.st = statusBroken
	w.reason = reason // a failure overrides a pending planned reason
	w.failAge = time.Since(l.born)
	w.brokeAt = time.Now()
	w.m.connected.Set(0)
	w.mu.Unlock()

	w.log.Warn("connection to the drainer lost; frames wait and are retried on a new connection",
		obs.KeyReason, reason, obs.KeyGen, l.gen, obs.KeyErr, err)
	w.poke()
	_ = beforeClose.Hit(ctx) // only a delay matters here; the owner's reference is dropped regardless
	w.release(l)             // the owner's reference
}

// writeFrame writes frame to l's connection with one Write call (resumed
// only after a timed-out Write that made progress), serialised with every
// other write to that connection. It returns nil once the whole
// frame was written. On failure it retires l (if still current) and returns
// the error; the caller retries the frame, whole, on the next lease. It
// returns ErrClosed when the Writer was closed and ctx.Err() when ctx ended
// during an injected delay. The caller holds a reference to l.
func (w *Writer) writeFrame(ctx context.Context, l *lease, frame []byte) error {
	reason, err := w.writeLocked(ctx, l, frame)
	if reason == "" {
		return err
	}
	w.m.writeErrors.Inc()
	w.notify(EventWriteError, reason)
	w.fail(ctx, l, reason, err)
	if errors.Is(err, fault.ErrInjectedClose) {
		// As if the drainer dropped the socket: shut it down, never close
		// it, since other writers may hold the lease.
		shutdown(l.conn)
	}
	return err
}

// writeLocked does writeFrame's I/O under l.wmu. A non-empty reason means
// the connection failed.
func (w *Writer) writeLocked(ctx context.Context, l *lease, frame []byte) (reason string, err error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.broken.Load() {
		return "", errLeaseBroken
	}
	if err := beforeWrite.Hit(ctx); err != nil {
		if fault.IsInjected(err) {
			return ReasonWriteError, fmt.Errorf("before writing to %q: %w", w.opts.Path, err)
		}
		return "", err // ctx ended
	}
	start := time.Now()
	// One Write call, unless the drainer is slow but keeps reading: a
	// timed-out Write that made progress is resumed with a fresh deadline,
	// so WriteTimeout bounds a stall, not a large frame. wmu keeps the rest
	// of the frame contiguous.
	for rest := frame; ; {
		if err := l.conn.SetWriteDeadline(time.Now().Add(w.opts.WriteTimeout)); err != nil {
			return ReasonWriteError, fmt.Errorf("set write deadline on %q: %w", w.opts.Path, err)
		}
		if w.isClosed() { // checked after our deadline is set, so Close's deadline wins
			return "", ErrClosed
		}
		var n int
		n, err = l.conn.Write(rest)
		rest = rest[n:]
		if err == nil || n == 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
	}
	w.m.writeSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		if w.isClosed() {
			return "", ErrClosed
		}
		reason = ReasonWriteError
		if errors.Is(err, os.ErrDeadlineExceeded) {
			reason = ReasonWriteTimeout
		}
		return reason, fmt.Errorf("write %d-byte frame to %q: %w", len(frame), w.opts.Path, err)
	}
	if err := afterWrite.Hit(ctx); err != nil {
		if fault.IsInjected(err) {
			return ReasonWriteError, fmt.Errorf("after writing to %q: %w", w.opts.Path, err)
		}
		// ctx ended during a delay, but the frame is written: report it
		// delivered rather than cause a duplicate.
	}
	return "", nil
}

// shutdown shuts conn down in both directions without closing its
// descriptor, as a peer's drop would; conns that cannot are left alone (the
// lease is retired anyway).
func shutdown(conn net.Conn) {
	if c, ok := conn.(interface {
		CloseRead() error
		CloseWrite() error
	}); ok {
		_ = c.CloseWrite()
		_ = c.CloseRead()
	}
}

// closeWrite shuts down conn's write half, where conn can.
func closeWrite(conn net.Conn) {
	if c, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = c.CloseWrite()
	}
}
