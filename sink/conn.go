package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/wire"
)

var _ pipeline.Sink = (*Writer)(nil)

// Fault points on the connection path.
var (
	beforeClose = fault.Register("sink.reconnect.before_close",
		"after the sink retired a connection (reconnect decided, new one swapped in), before the old one may be closed; a delay widens the origin race window")
	beforeWrite = fault.Register("sink.write.before",
		"before a frame is written to the drainer's socket; error = write error, close = the peer dropped the socket")
	afterWrite = fault.Register("sink.write.after",
		"after a frame was fully written; error or close makes the sink re-send it on a new connection (a duplicate)")
)

// Log attribute keys.
const (
	keyPath       = "path"
	keyReason     = "reason"
	keyErr        = "err"
	keyGen        = "generation"
	keyAttempts   = "failed_attempts"
	keyDowntime   = "downtime"
	keyHint       = "hint"
	keyCode       = "code"
	keyPeerReason = "peer_reason"
)

// Writer is the sink: one shared, safely replaceable connection to the
// drainer's Unix socket, used by every pipeline worker at once. Create it
// with New, start it with Start and stop it with Close.
type Writer struct {
	opts Options
	log  *slog.Logger
	m    *metrics

	wake chan struct{} // capacity 1; tells the connector that cur or want changed
	done chan struct{} // closed by Close

	mu      sync.Mutex          // the writers' lock; see the package doc for the lock order
	cur     *lease              // guarded by mu; the current connection, nil while there is none
	ready   chan struct{}       // guarded by mu; closed while cur != nil, replaced by an open one when cur becomes nil
	gen     uint64              // guarded by mu; generation of the newest lease
	want    string              // guarded by mu; reason of a pending reconnect, "" for none
	failed  bool                // guarded by mu; the last lease was retired by a failure the connector has not yet seen
	failAge time.Duration       // guarded by mu; how long that lease had lived
	brokeAt time.Time           // guarded by mu; when cur last became nil through a failure
	live    map[*lease]struct{} // guarded by mu; leases whose conn is not closed yet
	ever    bool                // guarded by mu; a connection was installed once (the first is not a reconnect)
	started bool                // guarded by mu
	closed  bool                // guarded by mu; set once by Close
	cancel  context.CancelFunc  // guarded by mu; stops the connector

	win    window // acked framing only; see acked.go
	ackd   bool   // immutable; Options.Framing is FramingAcked
	cfgErr error  // immutable; a bad Options value that Send reports

	wg sync.WaitGroup // the connector, one reader per connection and (acked) one flusher per connection

	frames, records, bytes  atomic.Uint64 // delivered; for Stats
	reconnects, writeErrors atomic.Uint64
	dialFailures            atomic.Uint64
	ackedFrames             atomic.Uint64
}

// Stats is a snapshot of a Writer's counters, for code that wants them
// without scraping metrics.
type Stats struct {
	Frames       uint64 // frames completely written
	Records      uint64 // records in those frames
	Bytes        uint64 // bytes of those frames
	Reconnects   uint64 // connections replaced, any reason (the first connect excluded)
	WriteErrors  uint64 // failed writes (each one retried)
	DialFailures uint64 // failed dial attempts (acked framing: and failed handshakes)
	Connected    bool   // a usable connection is current
	AckedFrames  uint64 // acked framing: DATA frames acknowledged by the drainer
	WindowFrames int    // acked framing: frames in the window (not yet acknowledged)
}

// New returns a Writer for opts. It does not connect: Start does.
func New(opts Options) *Writer {
	opts.setDefaults()
	w := &Writer{
		opts:  opts,
		log:   opts.Logger.With("component", "sink", keyPath, opts.Path),
		m:     newMetrics(opts.Registerer),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		ready: make(chan struct{}),
		live:  map[*lease]struct{}{},
		ackd:  opts.Framing == FramingAcked,
	}
	if opts.Framing != FramingLines && opts.Framing != FramingAcked {
		w.cfgErr = fmt.Errorf("sink framing %q: want %q or %q: %w", opts.Framing, FramingLines, FramingAcked, ErrUnknownFraming)
	}
	w.win.init(&w.opts)
	return w
}

// Start starts the connector goroutine, which connects to the drainer,
// reconnects with capped, jittered backoff and replaces connections on
// request. The Writer owns the goroutine until Close. When ctx ends the
// connector stops (Sends then wait for a connection that never comes, until
// their own ctx ends); Close is still required. Start after Start or Close
// does nothing. Sends made before Start wait for the first connection.
func (w *Writer) Start(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.closed {
		return
	}
	if w.cfgErr != nil {
		w.log.Error("the sink cannot start", keyErr, w.cfgErr)
		return
	}
	w.started = true
	ctx, w.cancel = context.WithCancel(ctx)
	w.wg.Add(1)
	go w.connector(ctx)
}

// Close stops the Writer: Sends waiting for a connection or in the middle of
// a write return ErrClosed (their frames count as not delivered), later
// Sends return ErrClosed, and the connections are closed once their writers
// let go. In the acked framing, Sends waiting for room in the window return
// ErrClosed and every frame still in the window has its Send's done called
// with ErrClosed. Close waits for the Writer's goroutines and is idempotent;
// it always returns nil.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.wg.Wait()
		return nil
	}
	w.closed = true
	close(w.done)
	cancel, cur := w.cancel, w.cur
	w.cur = nil
	if cur != nil {
		cur.retired = true
	}
	live := make([]*lease, 0, len(w.live))
	for l := range w.live {
		live = append(live, l)
	}
	w.m.connected.Set(0)
	w.win.mu.Lock()
	w.win.closed, w.win.cur = true, nil
	w.win.wakeLocked()
	w.win.mu.Unlock()
	w.mu.Unlock()

	if cancel != nil {
		cancel()
	}
	// Fail in-flight writes now rather than after WriteTimeout: a writer
	// checks done after setting its own deadline, so this one wins. The
	// writers then release their leases, which closes the connections.
	now := time.Now()
	for _, l := range live {
		_ = l.conn.SetWriteDeadline(now)
	}
	if cur != nil {
		w.release(cur) // the owner's reference
	}
	w.wg.Wait()
	w.closeWindow()
	return nil
}

// Reconnect asks for the connection to be replaced: the connector dials a
// new connection first and then swaps it in, so writers never wait. reason
// is logged; it is the metric's reason label when it is one of the Reason
// constants, and "requested" otherwise. Requests made while a reconnect is
// pending are merged into it. Reconnect does not block.
func (w *Writer) Reconnect(reason string) {
	label := ReasonRequested
	for _, r := range reasons {
		if r == reason {
			label = r
		}
	}
	w.log.Debug("reconnect requested", keyReason, reason)
	w.request(label)
}

// Connected reports whether a usable connection is current.
func (w *Writer) Connected() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur != nil
}

// Stats returns the Writer's counters.
func (w *Writer) Stats() Stats {
	return Stats{
		Frames:       w.frames.Load(),
		Records:      w.records.Load(),
		Bytes:        w.bytes.Load(),
		Reconnects:   w.reconnects.Load(),
		WriteErrors:  w.writeErrors.Load(),
		DialFailures: w.dialFailures.Load(),
		Connected:    w.Connected(),
		AckedFrames:  w.ackedFrames.Load(),
		WindowFrames: w.windowLen(),
	}
}

func (w *Writer) windowLen() int {
	w.win.mu.Lock()
	defer w.win.mu.Unlock()
	return len(w.win.entries)
}

func (w *Writer) isClosed() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// request records a planned reconnect for the connector. A pending reason is
// kept: requests merge.
func (w *Writer) request(reason string) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	if w.want == "" {
		w.want = reason
	}
	w.mu.Unlock()
	w.poke()
}

func (w *Writer) poke() {
	select {
	case w.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// fail retires l after a failed write or read, if l is still the current
// lease (the generation check: a stale writer never retires a fresh
// connection), and asks the connector for a new one. The caller holds a
// reference to l, or is l's reader.
func (w *Writer) fail(ctx context.Context, l *lease, reason string, err error) {
	l.markBroken()
	w.mu.Lock()
	if w.closed || !w.isCurrent(l) {
		w.mu.Unlock()
		return
	}
	w.win.mu.Lock()
	if w.win.cur == l {
		w.win.cur = nil
	}
	w.win.mu.Unlock()
	w.cur = nil
	l.retired = true
	w.ready = make(chan struct{})
	w.want = reason // a failure overrides a pending planned reason
	w.failed, w.failAge = true, time.Since(l.born)
	w.brokeAt = time.Now()
	w.m.connected.Set(0)
	w.mu.Unlock()

	w.log.Warn("connection to the drainer lost; frames wait and are retried on a new connection",
		keyReason, reason, keyGen, l.gen, keyErr, err)
	w.poke()
	_ = beforeClose.Hit(ctx) // only a delay matters here; the owner's reference is dropped regardless
	w.release(l)             // the owner's reference
}

// connector is the one goroutine that dials. It runs until ctx ends.
func (w *Writer) connector(ctx context.Context) {
	defer w.wg.Done()
	flaps := 0 // consecutive connections that failed young
	for {
		if !w.awaitWork(ctx) {
			return
		}
		// A connection that fails soon after it was made (a drainer that
		// accepts and drops) must not make us redial at full speed.
		w.mu.Lock()
		failed, age := w.failed, w.failAge
		w.failed = false
		w.mu.Unlock()
		if failed {
			if age < w.opts.BackoffMax {
				flaps++
				if sleep(ctx, w.backoff(flaps)) != nil {
					return
				}
			} else {
				flaps = 0
			}
		}
		s, failures, err := w.dial(ctx)
		if err != nil {
			return
		}
		w.install(ctx, s, failures)
	}
}

// awaitWork waits until a connection is needed: none is current, a
// reconnect was requested, or the current one reached MaxConnAge. It
// returns false when ctx ends.
func (w *Writer) awaitWork(ctx context.Context) bool {
	for {
		w.mu.Lock()
		cur, want := w.cur, w.want
		w.mu.Unlock()
		if cur == nil || want != "" {
			return true
		}
		var (
			t    *time.Timer
			ageC <-chan time.Time
		)
		if w.opts.MaxConnAge > 0 {
			t = time.NewTimer(time.Until(cur.born.Add(w.opts.MaxConnAge)))
			ageC = t.C
		}
		select {
		case <-ctx.Done():
		case <-w.wake:
		case <-ageC:
			w.request(ReasonMaxAge)
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return false
		}
	}
}

// session is a new connection, handshake done (acked framing).
type session struct {
	conn    net.Conn
	rd      *wire.Reader     // acked: the handshake's reader
	cs      wire.ClientState // acked: welcomed
	welcome wire.Welcome     // acked
}

// dial connects to the drainer (and, in the acked framing, does the
// handshake), retrying with capped exponential backoff and jitter. It logs
// the first failure of a streak only. It returns the connection and the
// number of failed attempts, or ctx.Err().
func (w *Writer) dial(ctx context.Context) (session, int, error) {
	failures := 0
	for {
		dctx, cancel := context.WithTimeout(ctx, w.opts.WriteTimeout)
		conn, err := w.opts.Dial(dctx, w.opts.Path)
		cancel()
		if err == nil && !w.ackd {
			return session{conn: conn}, failures, nil
		}
		if err == nil {
			rd, cs, wel, herr := w.handshake(conn)
			if herr == nil {
				return session{conn: conn, rd: rd, cs: cs, welcome: wel}, failures, nil
			}
			_ = conn.Close() // never shared
			code := "IO"
			if he, ok := errors.AsType[*handshakeError](herr); ok {
				code = he.code
			}
			w.m.handshakeFailures.WithLabelValues(code).Inc()
			if ctx.Err() != nil {
				return session{}, failures, ctx.Err()
			}
			failures++
			w.dialFailures.Add(1)
			if failures == 1 {
				w.log.Error("handshake with the drainer failed; retrying with backoff",
					keyCode, code, keyErr, herr, keyHint, "check that the drainer speaks the acked framing (sluice drain with framing: acked) and its version")
			} else {
				w.log.Debug("handshake failed", keyAttempts, failures, keyCode, code, keyErr, herr)
			}
			if sleep(ctx, w.backoff(failures)) != nil {
				return session{}, failures, ctx.Err()
			}
			continue
		}
		if ctx.Err() != nil {
			return session{}, failures, ctx.Err()
		}
		failures++
		w.m.dialFailures.Inc()
		w.dialFailures.Add(1)
		if failures == 1 {
			w.log.Warn("cannot connect to the drainer's socket; retrying with backoff",
				keyErr, err, keyHint, "start the drainer (sluice drain) or check sink.socket")
		} else {
			w.log.Debug("dial failed", keyAttempts, failures, keyErr, err)
		}
		if sleep(ctx, w.backoff(failures)) != nil {
			return session{}, failures, ctx.Err()
		}
	}
}

// backoff returns the wait after the n-th consecutive failure (n ≥ 1): a
// uniformly random duration between BackoffMin and min(BackoffMax,
// BackoffMin·2^(n-1)). The floor of BackoffMin means the sink never spins.
func (w *Writer) backoff(n int) time.Duration {
	lo, hi := w.opts.BackoffMin, w.opts.BackoffMax
	ceil := hi
	if n-1 < 32 {
		if c := lo << (n - 1); c > 0 && c < hi {
			ceil = c
		}
	}
	return lo + rand.N(ceil-lo+1)
}

// sleep waits for d or until ctx ends, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// install makes s's connection the current lease, retires the previous one
// (if any) and starts the connection's reader (and, acked, its flusher, which
// re-sends the window first). The old connection is closed when its last
// writer lets go.
func (w *Writer) install(ctx context.Context, s session, failures int) {
	conn := s.conn
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		_ = conn.Close() // never shared
		return
	}
	w.gen++
	l := &lease{conn: conn, gen: w.gen, born: time.Now(), refs: 1, gone: make(chan struct{})}
	if w.ackd {
		l.rd, l.cs, l.lim = s.rd, s.cs, s.welcome.Limits()
		l.kick = make(chan struct{}, 1)
		l.refs++ // the flusher's
		w.win.mu.Lock()
		w.win.cur = l
		w.win.lim = l.lim
		w.win.max = min(w.opts.WindowFrames, int(min(s.welcome.Window, 1<<30)))
		w.win.wakeLocked()
		w.win.mu.Unlock()
	}
	old, reason, first, brokeAt := w.cur, w.want, !w.ever, w.brokeAt
	w.cur, w.want, w.ever = l, "", true
	w.live[l] = struct{}{}
	if !first {
		// Counted before writers can use the new lease, so a Send that
		// returned after a reconnect always sees it counted.
		if reason == "" {
			reason = ReasonRequested
		}
		w.m.reconnects.WithLabelValues(reason).Inc()
		w.reconnects.Add(1)
	}
	if old == nil {
		close(w.ready) // wake the writers waiting for a connection
	} else {
		old.retired = true
	}
	w.m.connected.Set(1)
	w.mu.Unlock()

	if w.ackd {
		w.wg.Add(2) // the connector's own count is held, so Close's Wait cannot have returned
		go w.ackReader(ctx, l)
		go w.flusher(ctx, l)
	} else {
		w.wg.Add(1) // the connector's own count is held, so Close's Wait cannot have returned
		go w.readLoop(ctx, l)
	}
	if !first {
		w.notify(EventReconnect, reason)
	}

	switch {
	case first && w.ackd:
		w.log.Info("connected to the drainer", keyGen, l.gen, keyAttempts, failures,
			"framing", FramingAcked, "server", s.welcome.Server, "version", s.welcome.Version,
			"window", s.welcome.Window, "max_frame_bytes", s.welcome.MaxFrameBytes, "max_records", s.welcome.MaxRecords)
	case first:
		w.log.Info("connected to the drainer", keyGen, l.gen, keyAttempts, failures)
	default:
		if old == nil {
			w.log.Info("reconnected to the drainer", keyReason, reason, keyGen, l.gen,
				keyAttempts, failures, keyDowntime, time.Since(brokeAt).Round(time.Millisecond))
		} else {
			w.log.Debug("replaced the connection to the drainer", keyReason, reason, keyGen, l.gen)
		}
	}
	if old != nil {
		_ = beforeClose.Hit(ctx) // only a delay matters here; the owner's reference is dropped regardless
		w.release(old)           // the owner's reference
	}
}

// readLoop reads and discards whatever the drainer sends on l (a lines
// drainer sends nothing), so that a drainer that goes away is noticed even
// when nobody writes. It exits when the connection fails or is closed.
//
// The acked framing replaces this loop with its ack reader (acked.go).
func (w *Writer) readLoop(ctx context.Context, l *lease) {
	defer w.wg.Done()
	var buf [512]byte
	for {
		if _, err := l.conn.Read(buf[:]); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				w.fail(ctx, l, ReasonPeerClosed, fmt.Errorf("read from %q: %w", w.opts.Path, err))
			}
			return
		}
	}
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
	w.writeErrors.Add(1)
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
		if errors.Is(err, fault.ErrInjected) || errors.Is(err, fault.ErrInjectedClose) {
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
		if errors.Is(err, fault.ErrInjected) || errors.Is(err, fault.ErrInjectedClose) {
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
