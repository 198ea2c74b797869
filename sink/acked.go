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
	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

// This file is the "acked" framing (docs/protocol.md): records travel in
// length-prefixed DATA frames, and a frame is done only when the drainer
// acknowledges it, which it does once the records are durable.
//
// Send does not write. It waits for room in the window, appends the frame
// there under the next frame id, encodes it, and returns; the frame stays in
// the window until an ACK covers it. Each connection (lease) has two
// goroutines besides the connector:
//
//   - its flusher, which writes the window's frames on the lease in id order,
//     starting from the oldest one, so that after a reconnect every
//     unacknowledged frame is re-sent, in order and with its id, before any
//     newer frame; it holds a reference to the lease while it runs and stops
//     when the lease breaks or stops being current;
//   - its ack reader, which reads ACK and CLOSE frames and settles the
//     window: it removes the covered frames and calls their Sends' done.
//
// The flusher writes through writeFrame, so leases, references, generation
// checks and the write lock work as in the lines framing: a frame written on
// a lease that fails stays in the window and goes out again on the next one.
//
// The ack timeout is the ack reader's read deadline: it is set when frames
// become outstanding on the lease and pushed forward on each ACK that makes
// progress, and cleared when nothing is outstanding.

// Fault point of the ack reader.
var ackBefore = fault.Register("sink.ack.before",
	"in the acked sink's ack reader, before an ACK settles the window; a delay makes acks late, close (or error) drops the connection")

// window is the acked framing's window: every frame given to Send and not yet
// acknowledged, in frame id order.
type window struct {
	mu      sync.Mutex    // ordered after Writer.mu; see the package doc
	entries []*entry      // guarded by mu; ordered by id
	nextID  uint64        // guarded by mu; id of the next frame; ids start at 1
	bytes   int64         // guarded by mu; sum of the entries' sizes
	max     int           // guarded by mu; frame capacity: min(WindowFrames, the latest WELCOME's window)
	lim     wire.Limits   // guarded by mu; the latest WELCOME's limits (the protocol defaults before the first)
	cur     *lease        // guarded by mu; the lease whose flusher may write, nil while none
	room    chan struct{} // guarded by mu; closed and replaced whenever room may have appeared
	closed  bool          // guarded by mu; set by Close
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

func runSettled(calls []settled) {
	for _, c := range calls {
		c.done(c.err)
	}
}

func (win *window) init(opts *Options) {
	win.nextID = 1
	win.max = opts.WindowFrames
	win.lim = wire.Limits{MaxFrameBytes: wire.DefaultMaxFrameBytes, MaxRecords: wire.DefaultMaxRecords}
	win.room = make(chan struct{})
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
func (w *Writer) removeLocked(i int, err error, out []settled) []settled {
	win := &w.win
	e := win.entries[i]
	e.gone = true
	e.recycleLocked()
	n := len(win.entries)
	copy(win.entries[i:], win.entries[i+1:])
	win.entries[n-1] = nil // let the frame's memory go
	win.entries = win.entries[:n-1]
	win.bytes -= e.size
	w.m.windowFrames.Set(float64(len(win.entries)))
	w.m.windowBytes.Set(float64(win.bytes))
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

var wireRecsPool = sync.Pool{New: func() any { return new([]record.Record) }}

// sendAcked is Send for the acked framing.
func (w *Writer) sendAcked(ctx context.Context, recs []record.Record, done func(error)) error {
	w.win.mu.Lock()
	lim := w.win.lim
	w.win.mu.Unlock()
	parts, err := split(recs, lim)
	if err != nil {
		return err
	}
	g := &sendGroup{done: done, left: len(parts)}
	wp := wireRecsPool.Get().(*[]record.Record)
	defer func() {
		clear(*wp)
		wireRecsPool.Put(wp)
	}()
	for _, p := range parts {
		e, err := w.reserve(ctx, g, p)
		if err != nil {
			w.abandon(g)
			return err
		}
		wr := (*wp)[:0]
		for i := p.lo; i < p.hi; i++ {
			r := &recs[i]
			wr = append(wr, record.Record{
				ID:   record.ID{Stream: r.ID.Stream, Seq: r.ID.Seq, Index: r.ID.Index},
				Data: r.Data,
			})
		}
		*wp = wr
		bp := dataPool.Get().(*[]byte)
		buf, err := wire.AppendData(slices.Grow((*bp)[:0], int(p.size)), e.id, wr, lim)
		if err != nil {
			// split checked what AppendData checks, so this is a bug; do
			// not leave a hole in the window.
			err = fmt.Errorf("sink: encode DATA frame %d: %w", e.id, err)
			w.win.mu.Lock()
			g.abandoned = true
			for i, x := range w.win.entries {
				if x == e {
					_ = w.removeLocked(i, err, nil)
					w.win.wakeLocked()
					break
				}
			}
			w.win.mu.Unlock()
			return err
		}
		w.win.mu.Lock()
		if e.gone {
			// Close settled it while we encoded: nobody will write buf.
			*bp = buf[:0]
			dataPool.Put(bp)
		} else {
			e.buf, e.bp, e.ready = buf, bp, true
		}
		if l := w.win.cur; l != nil {
			l.poke()
		}
		w.win.mu.Unlock()
	}
	return nil
}

// reserve waits for room in the window and appends a not yet encoded entry
// for p to it, under the next frame id.
func (w *Writer) reserve(ctx context.Context, g *sendGroup, p part) (*entry, error) {
	win := &w.win
	win.mu.Lock()
	for {
		if win.closed {
			win.mu.Unlock()
			return nil, ErrClosed
		}
		n := len(win.entries)
		if n < win.max && (n == 0 || win.bytes+p.size <= w.opts.WindowBytes) {
			break
		}
		room := win.room
		win.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-w.done:
			return nil, ErrClosed
		}
		win.mu.Lock()
	}
	e := &entry{id: win.nextID, size: p.size, recs: p.hi - p.lo, grp: g}
	win.nextID++
	win.entries = append(win.entries, e)
	win.bytes += p.size
	w.m.windowFrames.Set(float64(len(win.entries)))
	w.m.windowBytes.Set(float64(win.bytes))
	win.mu.Unlock()
	return e, nil
}

// abandon marks g so that its done is never called: its Send returns an
// error. Frames of g already in the window are still delivered.
func (w *Writer) abandon(g *sendGroup) {
	w.win.mu.Lock()
	g.abandoned = true
	w.win.mu.Unlock()
}

// poke wakes l's flusher.
func (l *lease) poke() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// closeWindow settles every frame left in the window with ErrClosed. Close
// calls it once no goroutine of the Writer runs any more.
func (w *Writer) closeWindow() {
	w.win.mu.Lock()
	var calls []settled
	for len(w.win.entries) > 0 {
		calls = w.removeLocked(0, ErrClosed, calls)
	}
	w.win.mu.Unlock()
	runSettled(calls)
}

// tooBig reports whether e does not fit lim.
func (e *entry) tooBig(lim wire.Limits) bool {
	return e.size-wire.HeaderLen > int64(lim.MaxFrameBytes) || e.recs > lim.MaxRecords
}

// flusher writes the window's frames on l in id order until l breaks, stops
// being current, or the Writer closes. It owns one reference to l.
func (w *Writer) flusher(ctx context.Context, l *lease) {
	defer w.wg.Done()
	defer w.release(l)
	var batch []*entry
	for {
		batch = batch[:0]
		var calls []settled
		w.win.mu.Lock()
		if w.win.cur != l || l.broken.Load() {
			w.win.mu.Unlock()
			return
		}
		now := time.Now()
		idle := l.cs.Unacked() == 0
		for i := 0; i < len(w.win.entries); i++ {
			e := w.win.entries[i]
			if e.id < l.next {
				continue
			}
			if !e.ready {
				break
			}
			if e.tooBig(l.lim) {
				w.log.Error("a frame in the window exceeds the limits of the new connection to the drainer; its records are given back for redelivery",
					"frame_id", e.id, "frame_bytes", e.size, "records", e.recs,
					"max_frame_bytes", l.lim.MaxFrameBytes, "max_records", l.lim.MaxRecords,
					keyHint, "the drainer lowered its limits; keep them stable across restarts")
				calls = w.removeLocked(i, fmt.Errorf("frame %d of %d bytes and %d records, limits %d bytes and %d records: %w",
					e.id, e.size, e.recs, l.lim.MaxFrameBytes, l.lim.MaxRecords, ErrFrameLimits), calls)
				w.win.wakeLocked()
				i--
				continue
			}
			if !l.cs.CanSend() || l.cs.Sent(e.id) != nil {
				break
			}
			l.next = e.id + 1
			e.sends++
			e.writes++
			e.sentAt = now
			if e.sends > 1 {
				w.m.resentFrames.Inc()
			}
			batch = append(batch, e)
		}
		if idle && l.cs.Unacked() > 0 {
			_ = l.conn.SetReadDeadline(now.Add(w.opts.AckTimeout))
		}
		w.win.mu.Unlock()
		runSettled(calls)

		var werr error
		for _, e := range batch {
			if werr = w.writeFrame(ctx, l, e.buf); werr != nil {
				break // l is retired (the frames stay in the window) or the Writer closed
			}
			w.frames.Add(1)
			w.records.Add(uint64(e.recs))
			w.bytes.Add(uint64(e.size))
			w.m.frames.Inc()
			w.m.records.Add(float64(e.recs))
			w.m.bytes.Add(float64(e.size))
		}
		if len(batch) > 0 {
			w.win.mu.Lock()
			for _, e := range batch {
				e.writes--
				e.recycleLocked()
			}
			w.win.mu.Unlock()
			clear(batch)
			if werr != nil {
				return
			}
			continue
		}
		select {
		case <-l.kick:
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
// connection fails or is closed. It replaces readLoop in the acked framing.
func (w *Writer) ackReader(ctx context.Context, l *lease) {
	defer w.wg.Done()
	for {
		f, err := l.rd.ReadFrame()
		if err == nil && f.Type == wire.TypeAck {
			if herr := ackBefore.Hit(ctx); herr != nil {
				if !errors.Is(herr, fault.ErrInjected) && !errors.Is(herr, fault.ErrInjectedClose) {
					return // ctx ended during a delay: the Writer is stopping
				}
				shutdown(l.conn)
				w.fail(ctx, l, ReasonPeerClosed, fmt.Errorf("before settling an ACK from %q: %w", w.opts.Path, herr))
				return
			}
		}
		var calls []settled
		if err == nil {
			w.win.mu.Lock()
			var up uint64
			up, err = l.cs.Receive(f)
			if err == nil {
				now := time.Now()
				n := 0
				for len(w.win.entries) > 0 && w.win.entries[0].id <= up {
					e := w.win.entries[0]
					w.m.ackSeconds.Observe(now.Sub(e.sentAt).Seconds())
					calls = w.removeLocked(0, nil, calls)
					n++
				}
				if n > 0 {
					w.m.ackedFrames.Add(float64(n))
					w.ackedFrames.Add(uint64(n))
					w.win.wakeLocked()
					l.poke() // the session's window has room again
				}
				// Ack progress pushes the ack timeout forward.
				var deadline time.Time
				if l.cs.Unacked() > 0 {
					deadline = now.Add(w.opts.AckTimeout)
				}
				_ = l.conn.SetReadDeadline(deadline)
			}
			w.win.mu.Unlock()
		}
		runSettled(calls)
		if err != nil {
			w.readFailed(ctx, l, err)
			return
		}
	}
}

// readFailed ends l after its ack reader met err.
func (w *Writer) readFailed(ctx context.Context, l *lease, err error) {
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
		w.log.Log(ctx, lvl, "the drainer closed the connection", keyGen, l.gen,
			keyCode, pc.Close.Code.String(), keyPeerReason, pc.Close.Reason)
		w.fail(ctx, l, ReasonPeerClosed, fmt.Errorf("read from %q: %w", w.opts.Path, err))
		return
	}
	if pe, ok := errors.AsType[*wire.ProtocolError](err); ok {
		w.log.Error("the drainer broke the acked protocol; closing the connection", keyGen, l.gen,
			keyCode, pe.Code.String(), keyErr, err, keyHint, "check the drainer's version and implementation against docs/protocol.md")
		w.failWithClose(ctx, l, wire.CloseFor(err), ReasonProtocolError, fmt.Errorf("read from %q: %w", w.opts.Path, err))
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		w.win.mu.Lock()
		n := l.cs.Unacked()
		w.win.mu.Unlock()
		w.notify(EventAckTimeout, ReasonAckTimeout)
		w.log.Warn("no acknowledgement from the drainer in time; re-sending the window on a new connection",
			keyGen, l.gen, "unacked_frames", n, "ack_timeout", w.opts.AckTimeout,
			keyHint, "the drainer is stalled or slow to make records durable (disk?); raise sink ack timeout if this is expected")
		w.failWithClose(ctx, l, wire.Close{Code: wire.CodeTimeout, Reason: fmt.Sprintf("no ACK for %v", w.opts.AckTimeout)},
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
func (w *Writer) failWithClose(ctx context.Context, l *lease, c wire.Close, reason string, err error) {
	held := w.ref(l)
	w.fail(ctx, l, reason, err)
	if !held {
		return
	}
	defer w.release(l)
	l.wmu.Lock()
	_ = l.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = l.conn.Write(wire.AppendClose(nil, c))
	l.wmu.Unlock()
	shutdown(l.conn)
}

// ref takes a reference to l if its connection is still open.
func (w *Writer) ref(l *lease) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.live[l]; !ok {
		return false
	}
	l.refs++
	return true
}

// handshakeError is a failed handshake: code is the metric label.
type handshakeError struct {
	code string
	err  error
}

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// handshake sends HELLO on conn and reads the WELCOME, within WriteTimeout.
// On a protocol violation by the drainer it answers with CLOSE. conn is left
// open either way; the caller closes it on error.
func (w *Writer) handshake(conn net.Conn) (*wire.Reader, wire.ClientState, wire.Welcome, error) {
	var cs wire.ClientState
	fail := func(code string, err error) (*wire.Reader, wire.ClientState, wire.Welcome, error) {
		return nil, cs, wire.Welcome{}, &handshakeError{code: code, err: err}
	}
	_ = conn.SetDeadline(time.Now().Add(w.opts.WriteTimeout))
	h := wire.Hello{
		MinVersion: wire.Version,
		MaxVersion: wire.Version,
		Window:     uint32(min(w.opts.WindowFrames, 1<<31)),
		Instance:   w.opts.Instance,
	}
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
			if pc.Close.Code == wire.CodeUnsupportedVersion {
				msg = fmt.Errorf("the drainer at %q speaks no protocol version in common with this sink, which speaks versions %d..%d; the drainer says %q: %w",
					w.opts.Path, h.MinVersion, h.MaxVersion, pc.Close.Reason, err)
			}
			return fail(pc.Close.Code.String(), msg)
		}
		if pe, ok := errors.AsType[*wire.ProtocolError](err); ok {
			_, _ = conn.Write(wire.AppendClose(nil, wire.CloseFor(err)))
			return fail(pe.Code.String(), fmt.Errorf("bad answer to HELLO from %q (this sink speaks versions %d..%d): %w", w.opts.Path, h.MinVersion, h.MaxVersion, err))
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = conn.Write(wire.AppendClose(nil, wire.Close{Code: wire.CodeTimeout, Reason: "no WELCOME in time"}))
		}
		return fail(ioCode(err), fmt.Errorf("read WELCOME from %q: %w", w.opts.Path, err))
	}
	_ = conn.SetDeadline(time.Time{})
	return rd, cs, f.Welcome, nil
}

// ioCode is the handshake failure label of an I/O error.
func ioCode(err error) string {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "TIMEOUT"
	}
	return "IO"
}

// notify calls Options.Notify, if set.
func (w *Writer) notify(event, reason string) {
	if w.opts.Notify != nil {
		w.opts.Notify(event, reason)
	}
}
