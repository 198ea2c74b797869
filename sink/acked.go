package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

// This file is the "acked" framing (docs/protocol.md): records travel in
// length-prefixed DATA frames, and a frame is done only when the drainer
// acknowledges it, which it does once the records are durable.
//
// Send does not write. It waits for room in the window, appends the frame
// there under the next frame id, encodes it, and returns; the frame stays in
// the window until an ACK covers it. Each connection (lease) starts with a
// HELLO/WELCOME handshake and then has two goroutines of its own, started
// by start:
//
//   - its flusher, which writes the window's frames on the lease in id order,
//     starting from the oldest one, so that after a reconnect every
//     unacknowledged frame is re-sent, in order and with its id, before any
//     newer frame; it holds a reference to the lease while it runs and stops
//     when the lease breaks or another connection becomes the window's;
//   - its ack reader, which reads ACK and CLOSE frames and settles the
//     window: it removes the covered frames and calls their Sends' done.
//
// The flusher writes through the core's writeFrame, so leases, references,
// generation checks and the write lock work as in the lines framing: a frame
// written on a lease that fails stays in the window and goes out again on
// the next one.
//
// The ack timeout is the ack reader's read deadline: it is set when frames
// become outstanding on the lease and pushed forward on each ACK that makes
// progress, and cleared when nothing is outstanding.
//
// A connection the sink ends on purpose (a requested or max_age
// replacement, or Close) gets a CLOSE once its last writer let go (end):
// NORMAL, or GOING_AWAY when the Writer is closing. The ack reader then
// reads on, settling any ACK that still comes, until the drainer closes or
// closeLinger passes, and closes the connection (docs/protocol.md, 4.5).

// Fault point of the ack reader.
var ackBefore = fault.Register("sink.ack.before",
	"in the acked sink's ack reader, before an ACK settles the window; a delay makes acks late, close (or error) drops the connection")

const (
	// closeTimeout bounds the write of a CLOSE frame.
	closeTimeout = time.Second
	// closeLinger bounds how long the ack reader reads on after the sink
	// sent CLOSE (NORMAL or GOING_AWAY), waiting for the drainer to close.
	closeLinger = time.Second
)

// acked is the acked framing of one Writer.
type acked struct {
	w   *Writer // immutable
	win window
}

func newAcked(w *Writer) *acked {
	a := &acked{w: w}
	a.win.nextID = 1
	a.win.max = w.opts.WindowFrames
	a.win.lim = wire.Limits{MaxFrameBytes: wire.DefaultMaxFrameBytes, MaxRecords: wire.DefaultMaxRecords}
	a.win.room = make(chan struct{})
	return a
}

// window is the acked framing's window: every frame given to Send and not yet
// acknowledged, in frame id order.
type window struct {
	mu      sync.Mutex    // no other lock is taken while it is held; see the package doc
	entries []*entry      // guarded by mu; ordered by id
	nextID  uint64        // guarded by mu; id of the next frame; ids start at 1
	bytes   int64         // guarded by mu; sum of the entries' sizes
	max     int           // guarded by mu; frame capacity: min(WindowFrames, the latest WELCOME's window)
	lim     wire.Limits   // guarded by mu; the latest WELCOME's limits (the protocol defaults before the first)
	cur     *ackedConn    // guarded by mu; the connection whose flusher may write, nil before the first
	room    chan struct{} // guarded by mu; closed and replaced whenever room may have appeared
	closed  bool          // guarded by mu; set by close: nothing enters the window any more
}

// ackedConn is the acked framing's state of one connection: the lease's fs.
type ackedConn struct {
	rd   *wire.Reader  // owned by the ack reader; the handshake's reader, so nothing it buffered is lost
	wel  wire.Welcome  // immutable; the drainer's WELCOME
	lim  wire.Limits   // immutable; the limits WELCOME granted
	kick chan struct{} // capacity 1; wakes the flusher

	cs   wire.ClientState // guarded by acked.win.mu; the session's window and ack checks
	next uint64           // guarded by acked.win.mu; the flusher has written every window frame with a lower id

	// The goodbye (end) and the reader agree, under acked.win.mu, on who
	// closes the connection.
	ending       bool // guarded by acked.win.mu; end is sending CLOSE: the reader's next error ends the session quietly
	readerDone   bool // guarded by acked.win.mu; the ack reader has exited
	readerCloses bool // guarded by acked.win.mu; end handed the closing of the connection to the ack reader
}

// poke wakes the connection's flusher.
func (ac *ackedConn) poke() {
	select {
	case ac.kick <- struct{}{}:
	default:
	}
}

// entry is one DATA frame in the window.
type entry struct {
	id   uint64     // immutable
	size int64      // immutable; encoded size of the frame
	recs int        // immutable; records in the frame
	grp  *sendGroup // immutable

	buf    []byte    // written by the Send that made the entry before ready is set; immutable afterwards until recycled
	bp     *[]byte   // like buf; the dataPool slot buf came from, nil once recycled
	ready  bool      // guarded by window.mu; buf is complete
	writes int       // guarded by window.mu; flushers writing buf right now
	gone   bool      // guarded by window.mu; removed from the window
	sends  int       // guarded by window.mu; times the frame was handed to a flusher
	sentAt time.Time // guarded by window.mu; when it was last handed to a flusher
}

// sendGroup is one Send's frames: done is called once all are settled.
type sendGroup struct {
	done      func(error)
	left      int   // guarded by window.mu; frames not yet settled
	err       error // guarded by window.mu; the first frame's failure, if any
	abandoned bool  // guarded by window.mu; Send returned an error, so done is never called
}

// settled is a done call to make outside the lock.
type settled struct {
	done func(error)
	err  error
}

// runSettled makes the done calls, with no lock held: done belongs to the
// caller of Send and may take its own locks.
func runSettled(calls []settled) {
	for _, c := range calls {
		c.done(c.err)
	}
}

// wakeLocked wakes the Sends waiting for room. Called with win.mu held.
func (win *window) wakeLocked() {
	close(win.room)
	win.room = make(chan struct{})
}

// dataPool recycles the buffers of DATA frames. A frame's buffer goes back
// once the frame has left the window and no flusher is writing it (a frame
// re-sent on a new connection may still be written there when the old
// connection's ACK removes it): see entry.writes and recycleLocked.
var dataPool = sync.Pool{New: func() any { return new([]byte) }}

// recycleLocked gives e's buffer back to dataPool if e has left the window
// and no flusher is writing it. Called with win.mu held.
func (e *entry) recycleLocked() {
	if !e.gone || e.writes > 0 || e.bp == nil || !e.ready {
		return
	}
	*e.bp = e.buf[:0]
	dataPool.Put(e.bp)
	e.buf, e.bp = nil, nil
}

// removeLocked takes the entry at index i out of the window with result err
// and returns the done call to make if that completed its Send. Called with
// win.mu held.
func (a *acked) removeLocked(i int, err error, out []settled) []settled {
	win := &a.win
	e := win.entries[i]
	e.gone = true
	e.recycleLocked()
	n := len(win.entries)
	copy(win.entries[i:], win.entries[i+1:])
	win.entries[n-1] = nil // let the frame's memory go
	win.entries = win.entries[:n-1]
	win.bytes -= e.size
	a.w.m.windowFrames.Set(float64(len(win.entries)))
	a.w.m.windowBytes.Set(float64(win.bytes))
	g := e.grp
	if err != nil && g.err == nil {
		g.err = err
	}
	g.left--
	if g.left == 0 && !g.abandoned {
		out = append(out, settled{done: g.done, err: g.err})
	}
	return out
}

// part is a slice recs[lo:hi] of a Send's records that becomes one frame.
type part struct {
	lo, hi int
	size   int64 // encoded frame size, header included
}

// split cuts recs into frames that fit lim, at queue-message boundaries: all
// records with the same (stream, seq) stay in one frame (docs/protocol.md,
// section 4.3), so a message that alone exceeds lim is an error.
func split(recs []record.Record, lim wire.Limits) ([]part, error) {
	const empty = 8 + 2 + 4 // frame id, stream count, record count
	maxBody, maxRecs := int64(lim.MaxFrameBytes), lim.MaxRecords
	var (
		parts   []part
		cur     = part{size: empty}
		streams []string // of the current part
	)
	for i := 0; i < len(recs); {
		id := recs[i].ID
		if l := len(id.Stream); l == 0 || l > wire.MaxStreamLen {
			return nil, fmt.Errorf("sink: record %s/%d/%d: stream name of %d bytes, want 1..%d", id.Stream, id.Seq, id.Index, l, wire.MaxStreamLen)
		}
		// The message: recs[i:j].
		j, msgSize := i, int64(0)
		for ; j < len(recs) && recs[j].ID.Stream == id.Stream && recs[j].ID.Seq == id.Seq; j++ {
			msgSize += wire.RecordOverhead + int64(len(recs[j].Data))
		}
		known := false
		for _, s := range streams {
			known = known || s == id.Stream
		}
		add := msgSize
		if !known {
			add += 2 + int64(len(id.Stream))
		}
		fits := cur.size+add <= maxBody && cur.hi-cur.lo+(j-i) <= maxRecs && (known || len(streams) < wire.MaxStreamsPerFrame)
		if !fits && cur.hi > cur.lo {
			cur.size += wire.HeaderLen
			parts = append(parts, cur)
			cur, streams = part{lo: i, hi: i, size: empty}, streams[:0]
			add = msgSize + 2 + int64(len(id.Stream))
			known = false
			fits = cur.size+add <= maxBody && j-i <= maxRecs
		}
		if !fits {
			return nil, fmt.Errorf("message %s/%d: %d records, %d bytes encoded; the drainer accepts at most %d records and %d bytes per frame, and a message cannot be split: %w",
				id.Stream, id.Seq, j-i, empty+add, maxRecs, maxBody, ErrMessageTooLarge)
		}
		if !known {
			streams = append(streams, id.Stream)
		}
		cur.hi = j
		cur.size += add
		i = j
	}
	cur.size += wire.HeaderLen
	return append(parts, cur), nil
}

// send cuts recs into DATA frames that fit the drainer's limits (never
// splitting one queue message's records; a message too large for one frame
// is an error wrapping ErrMessageTooLarge), waits for room in the window,
// puts the frames there under the next frame ids and returns nil; the
// frames are written in id order on the current connection, and re-sent on
// the next one if it fails first. done(nil) is called once the drainer has
// acknowledged every frame of the Send, done(ErrClosed) if the Writer closes
// first (done(err wrapping ErrFrameLimits) if a new connection cannot take a
// frame in the window). send returns ctx.Err() or ErrClosed while waiting
// for room, and then never calls done.
func (a *acked) send(ctx context.Context, recs []record.Record, done func(error)) error {
	a.win.mu.Lock()
	lim := a.win.lim
	a.win.mu.Unlock()
	parts, err := split(recs, lim)
	if err != nil {
		return err
	}
	g := &sendGroup{done: done, left: len(parts)}
	for _, p := range parts {
		e, err := a.reserve(ctx, g, p)
		if err != nil {
			a.abandon(g)
			return err
		}
		bp := dataPool.Get().(*[]byte)
		buf, err := wire.AppendData(slices.Grow((*bp)[:0], int(p.size)), e.id, recs[p.lo:p.hi], lim)
		if err != nil {
			// split checked what AppendData checks, so this is a bug; do
			// not leave a hole in the window.
			err = fmt.Errorf("sink: encode DATA frame %d: %w", e.id, err)
			a.win.mu.Lock()
			g.abandoned = true
			for i, x := range a.win.entries {
				if x == e {
					_ = a.removeLocked(i, err, nil)
					a.win.wakeLocked()
					break
				}
			}
			a.win.mu.Unlock()
			return err
		}
		a.win.mu.Lock()
		if e.gone {
			// close settled it while we encoded: nobody will write buf.
			*bp = buf[:0]
			dataPool.Put(bp)
		} else {
			e.buf, e.bp, e.ready = buf, bp, true
		}
		if ac := a.win.cur; ac != nil {
			ac.poke()
		}
		a.win.mu.Unlock()
	}
	return nil
}

// reserve waits for room in the window and appends a not yet encoded entry
// for p to it, under the next frame id.
func (a *acked) reserve(ctx context.Context, g *sendGroup, p part) (*entry, error) {
	win := &a.win
	win.mu.Lock()
	for {
		if win.closed || a.w.isClosed() {
			win.mu.Unlock()
			return nil, ErrClosed
		}
		n := len(win.entries)
		if n < win.max && (n == 0 || win.bytes+p.size <= a.w.opts.WindowBytes) {
			break
		}
		room := win.room
		win.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-a.w.done:
			return nil, ErrClosed
		}
		win.mu.Lock()
	}
	e := &entry{id: win.nextID, size: p.size, recs: p.hi - p.lo, grp: g}
	win.nextID++
	win.entries = append(win.entries, e)
	win.bytes += p.size
	a.w.m.windowFrames.Set(float64(len(win.entries)))
	a.w.m.windowBytes.Set(float64(win.bytes))
	win.mu.Unlock()
	return e, nil
}

// abandon marks g so that its done is never called: its Send returns an
// error. Frames of g already in the window are still delivered.
func (a *acked) abandon(g *sendGroup) {
	a.win.mu.Lock()
	g.abandoned = true
	a.win.mu.Unlock()
}

// close settles every frame left in the window with ErrClosed, and lets no
// new frame in.
func (a *acked) close() {
	a.win.mu.Lock()
	a.win.closed = true
	var calls []settled
	for len(a.win.entries) > 0 {
		calls = a.removeLocked(0, ErrClosed, calls)
	}
	a.win.wakeLocked()
	a.win.mu.Unlock()
	runSettled(calls)
}

// tooBig reports whether e does not fit lim.
func (e *entry) tooBig(lim wire.Limits) bool {
	return e.size-wire.HeaderLen > int64(lim.MaxFrameBytes) || e.recs > lim.MaxRecords
}

// start makes l's connection the window's, wakes the previous connection's
// flusher (so that it sees it is no longer the window's and lets go of its
// lease), and starts l's flusher and ack reader.
func (a *acked) start(ctx context.Context, l *lease) {
	w := a.w
	ac := l.fs.(*ackedConn)
	a.win.mu.Lock()
	prev := a.win.cur
	a.win.cur = ac
	a.win.lim = ac.lim
	a.win.max = min(w.opts.WindowFrames, int(min(ac.wel.Window, 1<<30)))
	a.win.wakeLocked()
	a.win.mu.Unlock()
	if prev != nil {
		prev.poke()
	}
	w.wg.Add(1)
	go a.ackReader(ctx, l, ac)
	if w.ref(l) { // the flusher's; cannot fail, install holds a reference
		w.wg.Add(1)
		go a.flusher(ctx, l, ac)
	}
}

// flusher writes the window's frames on l in id order until l breaks,
// another connection becomes the window's, or the Writer closes. It owns
// one reference to l.
func (a *acked) flusher(ctx context.Context, l *lease, ac *ackedConn) {
	w := a.w
	defer w.wg.Done()
	defer w.release(l)
	var batch, tooBig []*entry
	for {
		batch, tooBig = batch[:0], tooBig[:0]
		var calls []settled
		a.win.mu.Lock()
		if a.win.cur != ac || l.broken.Load() {
			a.win.mu.Unlock()
			return
		}
		now := time.Now()
		idle := ac.cs.Unacked() == 0
		for i := 0; i < len(a.win.entries); i++ {
			e := a.win.entries[i]
			if e.id < ac.next {
				continue
			}
			if !e.ready {
				break
			}
			if e.tooBig(ac.lim) {
				tooBig = append(tooBig, e) // logged below, outside the lock
				calls = a.removeLocked(i, fmt.Errorf("frame %d of %d bytes and %d records, limits %d bytes and %d records: %w",
					e.id, e.size, e.recs, ac.lim.MaxFrameBytes, ac.lim.MaxRecords, ErrFrameLimits), calls)
				a.win.wakeLocked()
				i--
				continue
			}
			if !ac.cs.CanSend() || ac.cs.Sent(e.id) != nil {
				break
			}
			ac.next = e.id + 1
			e.sends++
			e.writes++
			e.sentAt = now
			if e.sends > 1 {
				w.m.resentFrames.Inc()
			}
			batch = append(batch, e)
		}
		if idle && ac.cs.Unacked() > 0 {
			_ = l.conn.SetReadDeadline(now.Add(w.opts.AckTimeout))
		}
		a.win.mu.Unlock()
		for _, e := range tooBig { // id, size and recs are immutable
			w.log.Error("a frame in the window exceeds the limits of the new connection to the drainer; its records are given back for redelivery",
				obs.KeyFrameID, e.id, obs.KeyFrameBytes, e.size, obs.KeyRecords, e.recs,
				obs.KeyMaxFrameBytes, ac.lim.MaxFrameBytes, obs.KeyMaxRecords, ac.lim.MaxRecords,
				obs.KeyHint, "the drainer lowered its limits; keep them stable across restarts")
		}
		clear(tooBig)
		runSettled(calls)

		var werr error
		for _, e := range batch {
			if werr = w.writeFrame(ctx, l, e.buf); werr != nil {
				break // l is retired (the frames stay in the window) or the Writer closed
			}
			w.m.frames.Inc()
			w.m.bytes.Add(float64(e.size))
		}
		if len(batch) > 0 {
			a.win.mu.Lock()
			for _, e := range batch {
				e.writes--
				e.recycleLocked()
			}
			a.win.mu.Unlock()
			clear(batch)
			if werr != nil {
				return
			}
			continue
		}
		select {
		case <-ac.kick:
		case <-l.gone:
			return
		case <-w.done:
			return
		case <-ctx.Done():
			return
		}
	}
}

// ackReader reads l's ACK and CLOSE frames and settles the window, until the
// connection fails or is closed, or the session ended after the sink's
// CLOSE (then it closes the connection if end handed that over).
func (a *acked) ackReader(ctx context.Context, l *lease, ac *ackedConn) {
	w := a.w
	defer w.wg.Done()
	defer func() {
		a.win.mu.Lock()
		ac.readerDone = true
		closes := ac.readerCloses
		a.win.mu.Unlock()
		if closes {
			_ = l.conn.Close()
		}
	}()
	for {
		f, err := ac.rd.ReadFrame()
		if err == nil && f.Type == wire.TypeAck {
			if herr := ackBefore.Hit(ctx); herr != nil {
				if !fault.IsInjected(herr) {
					return // ctx ended during a delay: the Writer is stopping
				}
				shutdown(l.conn)
				w.fail(ctx, l, ReasonPeerClosed, fmt.Errorf("before settling an ACK from %q: %w", w.opts.Path, herr))
				return
			}
		}
		var calls []settled
		ending := false
		a.win.mu.Lock()
		if err == nil {
			var up uint64
			up, err = ac.cs.Receive(f)
			if err == nil {
				now := time.Now()
				n, recs := 0, 0
				for len(a.win.entries) > 0 && a.win.entries[0].id <= up {
					e := a.win.entries[0]
					w.m.ackSeconds.Observe(now.Sub(e.sentAt).Seconds())
					recs += e.recs
					calls = a.removeLocked(0, nil, calls)
					n++
				}
				if n > 0 {
					w.m.ackedFrames.Add(float64(n))
					w.m.records.Add(float64(recs))
					a.win.wakeLocked()
					ac.poke() // the session's window has room again
				}
				// Ack progress pushes the ack timeout forward; after the
				// sink's CLOSE, the linger deadline stays.
				if !ac.ending {
					var deadline time.Time
					if ac.cs.Unacked() > 0 {
						deadline = now.Add(w.opts.AckTimeout)
					}
					_ = l.conn.SetReadDeadline(deadline)
				}
			}
		}
		ending = ac.ending
		a.win.mu.Unlock()
		runSettled(calls)
		if err != nil {
			if !ending { // after the sink's CLOSE, any end of the stream is the session's end
				a.readFailed(ctx, l, ac, err)
			}
			return
		}
	}
}

// readFailed ends l after its ack reader met err.
func (a *acked) readFailed(ctx context.Context, l *lease, ac *ackedConn, err error) {
	w := a.w
	if errors.Is(err, net.ErrClosed) || w.isClosed() {
		return // we closed it
	}
	if pc, ok := errors.AsType[*wire.PeerClosedError](err); ok {
		lvl := slog.LevelWarn
		if c := pc.Close.Code; c == wire.CodeNormal || c == wire.CodeGoingAway {
			lvl = slog.LevelInfo
		} else if c >= 0x0100 && c < 0x0400 {
			lvl = slog.LevelError
		}
		w.log.Log(ctx, lvl, "the drainer closed the connection", obs.KeyGen, l.gen,
			obs.KeyCode, pc.Close.Code.String(), obs.KeyPeerReason, pc.Close.Reason)
		w.fail(ctx, l, ReasonPeerClosed, fmt.Errorf("read from %q: %w", w.opts.Path, err))
		return
	}
	if pe, ok := errors.AsType[*wire.ProtocolError](err); ok {
		w.log.Error("the drainer broke the acked protocol; closing the connection", obs.KeyGen, l.gen,
			obs.KeyCode, pe.Code.String(), obs.KeyErr, err, obs.KeyHint, "check the drainer's version and implementation against docs/protocol.md")
		a.failWithClose(ctx, l, wire.CloseFor(err), ReasonProtocolError, fmt.Errorf("read from %q: %w", w.opts.Path, err))
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		a.win.mu.Lock()
		n := ac.cs.Unacked()
		a.win.mu.Unlock()
		w.notify(EventAckTimeout, ReasonAckTimeout)
		w.log.Warn("no acknowledgement from the drainer in time; re-sending the window on a new connection",
			obs.KeyGen, l.gen, obs.KeyUnacked, n, obs.KeyTimeout, w.opts.AckTimeout,
			obs.KeyHint, "the drainer is stalled or slow to make records durable (disk?); raise sink ack timeout if this is expected")
		a.failWithClose(ctx, l, wire.Close{Code: wire.CodeTimeout, Reason: fmt.Sprintf("no ACK for %v", w.opts.AckTimeout)},
			ReasonAckTimeout, fmt.Errorf("no ACK from %q for %v: %w", w.opts.Path, w.opts.AckTimeout, err))
		return
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("truncated frame: %w", err)
	}
	w.fail(ctx, l, ReasonPeerClosed, fmt.Errorf("read from %q: %w", w.opts.Path, err))
}

// failWithClose retires l with reason, then sends c on it and shuts it
// down. Failing first means that the drainer's reaction to the CLOSE (it
// drops the connection) cannot be seen first by a writer, which would
// report the reconnect as a write error. The CLOSE waits for a write in
// progress (bounded by WriteTimeout, or cut short by Close); no new write
// starts on a broken lease. Nothing is sent if the connection is already
// closed.
func (a *acked) failWithClose(ctx context.Context, l *lease, c wire.Close, reason string, err error) {
	w := a.w
	held := w.ref(l)
	w.fail(ctx, l, reason, err)
	if !held {
		return
	}
	defer w.release(l)
	l.wmu.Lock()
	_ = l.conn.SetWriteDeadline(time.Now().Add(closeTimeout))
	_, _ = l.conn.Write(wire.AppendClose(nil, c))
	l.wmu.Unlock()
	shutdown(l.conn)
}

// end says goodbye on a connection the sink ends on purpose: unless it
// broke, l gets CLOSE NORMAL (replaced) or GOING_AWAY (the Writer is
// closing), its write half is shut down, and the ack reader reads on for
// at most closeLinger (settling ACKs that still come) and closes it. No
// write is in progress on l: its last reference is gone.
func (a *acked) end(l *lease) bool {
	w := a.w
	ac := l.fs.(*ackedConn)
	if l.broken.Load() {
		return false
	}
	c := wire.Close{Code: wire.CodeNormal, Reason: "connection replaced"}
	if w.isClosed() {
		c = wire.Close{Code: wire.CodeGoingAway, Reason: "sink shutting down"}
	}
	a.win.mu.Lock()
	if ac.readerDone {
		a.win.mu.Unlock()
		return false
	}
	ac.ending = true
	a.win.mu.Unlock()

	l.wmu.Lock()
	_ = l.conn.SetWriteDeadline(time.Now().Add(closeTimeout))
	_, err := l.conn.Write(wire.AppendClose(nil, c))
	l.wmu.Unlock()
	if err != nil {
		w.log.Debug("could not send CLOSE to the drainer", obs.KeyGen, l.gen, obs.KeyCode, c.Code.String(), obs.KeyErr, err)
	}
	closeWrite(l.conn)

	a.win.mu.Lock()
	defer a.win.mu.Unlock()
	if ac.readerDone || err != nil {
		return false
	}
	ac.readerCloses = true
	_ = l.conn.SetReadDeadline(time.Now().Add(closeLinger))
	return true
}

// handshake sends HELLO on conn and reads the WELCOME, within WriteTimeout.
// On a protocol violation by the drainer it answers with CLOSE. conn is left
// open either way; the caller closes it on error.
func (a *acked) handshake(ctx context.Context, conn net.Conn) (any, []any, error) {
	w := a.w
	var cs wire.ClientState
	const hint = "check that the drainer speaks the acked framing (sluice drain with framing: acked) and its version"
	fail := func(code string, err error) (any, []any, error) {
		return nil, nil, &handshakeError{code: code, hint: hint, err: err}
	}
	deadline := time.Now().Add(w.opts.WriteTimeout)
	h := wire.Hello{
		MinVersion: wire.Version,
		MaxVersion: wire.Version,
		Window:     uint32(min(w.opts.WindowFrames, 1<<31)),
		Instance:   w.opts.Instance,
	}
	if w.opts.Positions != nil {
		pctx, cancel := context.WithDeadline(ctx, deadline)
		ps, err := w.opts.Positions(pctx)
		cancel()
		if err != nil {
			return nil, nil, &handshakeError{code: "POSITIONS", hint: "the sink could not read the queue's stream positions for the drainer's rewind check; check the queue connection",
				err: fmt.Errorf("read the queue's stream positions for HELLO: %w", err)}
		}
		h.Positions = ps
	}
	_ = conn.SetDeadline(deadline)
	b, err := wire.AppendHello(nil, h)
	if err != nil {
		return fail("IO", fmt.Errorf("encode HELLO: %w", err))
	}
	if _, err := conn.Write(b); err != nil {
		return fail(ioCode(err), fmt.Errorf("send HELLO to %q: %w", w.opts.Path, err))
	}
	rd := wire.NewReader(conn)
	rd.Limits = wire.Limits{MaxFrameBytes: wire.MaxHandshakeBytes}
	f, err := rd.ReadFrame()
	if err == nil {
		_, err = cs.Welcome(h, f)
	}
	if err != nil {
		if pc, ok := errors.AsType[*wire.PeerClosedError](err); ok {
			msg := fmt.Errorf("the drainer at %q refused the handshake with %s (%q): %w", w.opts.Path, pc.Close.Code, pc.Close.Reason, err)
			switch pc.Close.Code {
			case wire.CodeUnsupportedVersion:
				msg = fmt.Errorf("the drainer at %q speaks no protocol version in common with this sink, which speaks versions %d..%d; the drainer says %q: %w",
					w.opts.Path, h.MinVersion, h.MaxVersion, pc.Close.Reason, err)
			case wire.CodeStreamRewound:
				return nil, nil, &handshakeError{code: pc.Close.Code.String(), stuck: true,
					hint: "the queue lost messages the drainer had committed (its store's tail in a crash, or a restore from backup), so its new messages reuse their sequences; nothing is delivered or acknowledged until the rewind is accepted: restart the drainer once with --accept-rewind (drain.accept_rewind), or move its output directory aside",
					err:  fmt.Errorf("the drainer at %q refused this sink: the queue went back (%s): %w", w.opts.Path, pc.Close.Reason, err)}
			}
			return fail(pc.Close.Code.String(), msg)
		}
		if pe, ok := errors.AsType[*wire.ProtocolError](err); ok {
			_, _ = conn.Write(wire.AppendClose(nil, wire.CloseFor(err)))
			return fail(pe.Code.String(), fmt.Errorf("bad answer to HELLO from %q (this sink speaks versions %d..%d): %w", w.opts.Path, h.MinVersion, h.MaxVersion, err))
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			_ = conn.SetWriteDeadline(time.Now().Add(closeTimeout))
			_, _ = conn.Write(wire.AppendClose(nil, wire.Close{Code: wire.CodeTimeout, Reason: "no WELCOME in time"}))
		}
		return fail(ioCode(err), fmt.Errorf("read WELCOME from %q: %w", w.opts.Path, err))
	}
	_ = conn.SetDeadline(time.Time{})
	wel := f.Welcome
	ac := &ackedConn{rd: rd, wel: wel, lim: wel.Limits(), kick: make(chan struct{}, 1), cs: cs}
	attrs := []any{obs.KeyFraming, wire.FramingAcked, obs.KeyServer, wel.Server, obs.KeyVersion, wel.Version,
		obs.KeyWindow, wel.Window, obs.KeyMaxFrameBytes, wel.MaxFrameBytes, obs.KeyMaxRecords, wel.MaxRecords}
	return ac, attrs, nil
}

// ioCode is the handshake failure label of an I/O error.
func ioCode(err error) string {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "TIMEOUT"
	}
	return "IO"
}
