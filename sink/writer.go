package sink

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

var _ pipeline.Sink = (*Writer)(nil)

// status is the state of a Writer's connection. It changes only under
// Writer.mu, along these transitions:
//
//	idle ──Start──▶ connecting ──install──▶ connected ◀──install── replacing
//	                                          │   ╰──Reconnect, MaxConnAge──╯
//	                     connected, replacing │ fail (the current lease broke)
//	                                          ▼
//	            broken ──connector takes it──▶ reconnecting ──install──▶ connected
//
//	any status ──Close──▶ closed (final)
//
// A lease is current (Writer.cur != nil) exactly in connected and replacing.
type status int

const (
	statusIdle         status = iota // New returned; Start not called yet
	statusConnecting                 // the connector dials the first connection
	statusConnected                  // a connection is current, nothing pending
	statusReplacing                  // a connection is current; the connector dials its planned replacement (Writer.reason says why)
	statusBroken                     // the current connection failed; the connector has not taken it up yet
	statusReconnecting               // the connector backs off and dials after a failure (Writer.reason says which)
	statusClosed                     // Close was called; final
)

var statusNames = [...]string{"idle", "connecting", "connected", "replacing", "broken", "reconnecting", "closed"}

func (s status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// Writer is the sink: one shared, safely replaceable connection to the
// drainer's Unix socket, used by every pipeline worker at once. Create it
// with New, start it with Start and stop it with Close.
//
// The Writer itself is the connection core (writer.go, lease.go,
// connector.go): it knows nothing of framing. The framing (lines.go or
// acked.go) implements Send and whatever each connection needs on top.
type Writer struct {
	opts Options
	log  *slog.Logger
	m    *metrics
	fr   framing // immutable; the framing of Options.Framing (nil with cfgErr)

	wake chan struct{} // capacity 1; tells the connector that st changed
	done chan struct{} // closed by Close

	mu      sync.Mutex          // the core's lock; see the package doc for the lock order
	st      status              // guarded by mu
	cur     *lease              // guarded by mu; the current lease: non-nil exactly in connected and replacing
	ready   chan struct{}       // guarded by mu; closed while cur != nil, replaced by an open one when cur becomes nil
	gen     uint64              // guarded by mu; generation of the newest lease
	reason  string              // guarded by mu; in replacing, broken and reconnecting: the reconnect reason of the next connection
	failAge time.Duration       // guarded by mu; in broken: how long the failed lease had lived
	brokeAt time.Time           // guarded by mu; when cur last became nil through a failure
	live    map[*lease]struct{} // guarded by mu; leases with a reference left (their conn is open)
	cancel  context.CancelFunc  // guarded by mu; stops the connector

	cfgErr error // immutable; a bad Options value that Send reports

	// wg counts the connector and each framing's per-connection
	// goroutines. The connector's Add happens in Start, under mu and before
	// Close can set closed; every other Add happens on the connector (in
	// install, through framing.start) while its own count is held. So
	// Close's Wait cannot return before any of them.
	wg sync.WaitGroup
}

// New returns a Writer for opts. It does not connect: Start does.
func New(opts Options) *Writer {
	opts.setDefaults()
	w := &Writer{
		opts:  opts,
		log:   opts.Logger.With(obs.KeyComponent, "sink", obs.KeyPath, opts.Path),
		m:     newMetrics(opts.Registerer),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		ready: make(chan struct{}),
		live:  map[*lease]struct{}{},
	}
	switch opts.Framing {
	case wire.FramingLines:
		w.fr = &lines{w: w}
	case wire.FramingAcked:
		w.fr = newAcked(w)
	default:
		w.cfgErr = fmt.Errorf("sink framing %q: want %q or %q: %w", opts.Framing, wire.FramingLines, wire.FramingAcked, ErrUnknownFraming)
	}
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
	if w.st != statusIdle {
		return
	}
	if w.cfgErr != nil {
		w.log.Error("the sink cannot start", obs.KeyErr, w.cfgErr)
		return
	}
	w.st = statusConnecting
	ctx, w.cancel = context.WithCancel(ctx)
	w.wg.Add(1)
	go w.connector(ctx)
}

// Send delivers recs as one frame (pipeline.Sink). It is safe for
// concurrent use; frames never interleave. An empty recs is done at once.
// In both framings done is called at most once, with no lock of the sink
// held, and never when Send returned an error.
//
// Lines framing: Send writes recs as one frame of lines. It blocks while
// there is no connection, retries the whole frame on the next connection
// after a failed or partial write (a partial line left on the old
// connection is the drainer's to discard at EOF), and returns nil only once
// the whole frame was written to one connection, after calling done(nil).
// It returns ctx.Err() or ErrClosed otherwise.
//
// Acked framing: Send cuts recs into DATA frames that fit the drainer's
// limits (never splitting one queue message's records; a message too large
// for one frame is an error wrapping ErrMessageTooLarge), waits for room in
// the window, puts the frames there under the next frame ids and returns
// nil; the frames are written in id order on the current connection, and
// re-sent on the next one if it fails first. done(nil) is called once the
// drainer has acknowledged every frame of the Send, done(ErrClosed) if the
// Writer closes first (done(err wrapping ErrFrameLimits) if a new
// connection cannot take a frame in the window). Send returns ctx.Err() or
// ErrClosed while waiting for room.
func (w *Writer) Send(ctx context.Context, recs []record.Record, done func(error)) error {
	if w.cfgErr != nil {
		return w.cfgErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.isClosed() {
		return ErrClosed
	}
	if len(recs) == 0 {
		done(nil)
		return nil
	}
	return w.fr.send(ctx, recs, done)
}

// Close stops the Writer: Sends waiting for a connection or in the middle of
// a write return ErrClosed (their frames count as not delivered), later
// Sends return ErrClosed, and the connections are closed once their writers
// let go. In the acked framing, each connection that was still healthy gets
// a CLOSE GOING_AWAY first, Sends waiting for room in the window return
// ErrClosed and every frame still in the window once the connections are
// gone has its Send's done called with ErrClosed. Close waits for the
// Writer's goroutines and is idempotent; it always returns nil.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.st == statusClosed {
		w.mu.Unlock()
		w.wg.Wait()
		return nil
	}
	w.st = statusClosed
	close(w.done)
	cancel, cur := w.cancel, w.cur
	w.cur = nil
	if cur != nil {
		cur.retired = true
	}
	// Fail in-flight writes now rather than after WriteTimeout: a writer
	// checks done after setting its own deadline, so this one wins. The
	// writers then release their leases, which ends the connections. Set
	// under mu (no I/O: it only arms a timer), so that a lease whose last
	// reference is dropped later gets its own deadline for its CLOSE after
	// this one (release takes the lease out of live under mu).
	now := time.Now()
	for l := range w.live {
		_ = l.conn.SetWriteDeadline(now)
	}
	w.m.connected.Set(0)
	w.mu.Unlock()

	if cancel != nil {
		cancel()
	}
	if cur != nil {
		w.release(cur) // the owner's reference
	}
	w.wg.Wait()
	if w.fr != nil {
		w.fr.close()
	}
	return nil
}

// Reconnect asks for the connection to be replaced: the connector dials a
// new connection first and then swaps it in, so writers never wait. reason
// is logged; it is the metric's reason label when it is one of the Reason
// constants, and "requested" otherwise. Requests made while a reconnect is
// pending, or while there is no connection (the connector is dialling one
// anyway), are merged into it. Reconnect does not block.
func (w *Writer) Reconnect(reason string) {
	label := ReasonRequested
	for _, r := range reasons {
		if r == reason {
			label = r
		}
	}
	w.log.Debug("reconnect requested", obs.KeyReason, reason)
	w.m.requests.Inc()
	w.request(label)
}

// Connected reports whether a usable connection is current.
func (w *Writer) Connected() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur != nil
}

func (w *Writer) isClosed() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// request plans the replacement of the current connection (connected →
// replacing). In any other status it does nothing: a pending replacement
// keeps its reason, and without a connection the connector dials anyway.
func (w *Writer) request(reason string) {
	w.mu.Lock()
	if w.st != statusConnected {
		w.mu.Unlock()
		return
	}
	w.st, w.reason = statusReplacing, reason
	w.mu.Unlock()
	w.poke()
}

func (w *Writer) poke() {
	select {
	case w.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// notify calls Options.Notify, if set.
func (w *Writer) notify(event, reason string) {
	if w.opts.Notify != nil {
		w.opts.Notify(event, reason)
	}
}
