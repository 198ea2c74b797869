package drain

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

// ackBefore is hit before each ACK is written.
var ackBefore = fault.Register("drain.ack.before", "drainer (acked): before an ACK is sent (delay: late acks; error/close: drop the connection without acknowledging)")

// connReadBuf is the read buffer of an acked connection. It must be at least
// the wire.Reader's own buffer size, so that wire.NewReader adopts it (as
// bufio.NewReaderSize does with a large enough *bufio.Reader) and Buffered
// tells whether the next frame has started arriving.
const connReadBuf = 256 << 10

// testHookReceived and testHookAck, when set, run after a DATA frame was
// handed to the committer and after an ACK was written (export_test.go).
var testHookReceived, testHookAck func()

// lingerTimeout bounds the wait for the peer to close after our CLOSE.
const lingerTimeout = time.Second

// ackedConn is one connection in the acked framing. Its handler goroutine
// reads frames; its acker goroutine (owned by the handler) writes ACKs.
//
// Lock order: stMu and wmu are never held together.
type ackedConn struct {
	*conn
	s    *Server
	acks chan *pending // committer → acker; capacity = the granted window

	inflight sync.WaitGroup // frames handed to the committer and not yet acked (or given up)

	stMu sync.Mutex
	st   wire.ServerState // guarded by stMu

	wmu    sync.Mutex // serialises writes to the socket; held across them on purpose
	closed bool       // guarded by wmu: a CLOSE was sent or the connection given up: write nothing more
	wbuf   []byte     // guarded by wmu
}

// handleAcked serves one connection of the acked framing (docs/protocol.md).
func (s *Server) handleAcked(c *conn) {
	ac := &ackedConn{conn: c, s: s}
	br := bufio.NewReaderSize(c.nc, connReadBuf)
	rd := wire.NewReader(br)
	rd.Limits.MaxFrameBytes = wire.MaxHandshakeBytes

	c.setReadDeadline(time.Now().Add(s.opts.FrameTimeout))
	f, err := rd.ReadFrame()
	if err == nil {
		var w wire.Welcome
		w, err = ac.st.Hello(f, s.own)
		if err == nil {
			err = ac.admit(f.Hello.Positions)
		}
		if err == nil {
			ac.wmu.Lock()
			ac.wbuf, _ = wire.AppendWelcome(ac.wbuf[:0], w) // w came from Accept: valid
			err = ac.writeLocked(ac.wbuf)
			ac.wmu.Unlock()
			if err != nil {
				ac.end(err, false)
				return
			}
			c.log.Debug("handshake done", obs.KeyInstance, f.Hello.Instance, obs.KeyWindow, w.Window, obs.KeyMaxFrameBytes, w.MaxFrameBytes)
			rd.Limits = w.Limits()
			ac.acks = make(chan *pending, w.Window)
		}
	}
	if err != nil {
		ac.end(err, true)
		return
	}
	ackerDone := make(chan struct{})
	go func() {
		defer close(ackerDone)
		ac.runAcker()
	}()
	defer func() {
		close(ac.acks) // the committer has handed back every frame: inflight reached zero
		<-ackerDone
	}()
	for {
		if br.Buffered() == 0 { // idle between frames: no timeout but shutdown's
			c.setReadDeadline(time.Time{})
			if _, err := br.Peek(1); err != nil {
				ac.end(err, false)
				return
			}
		}
		c.setReadDeadline(time.Now().Add(s.opts.FrameTimeout))
		f, err := rd.ReadFrame()
		if err == nil {
			ac.stMu.Lock()
			err = ac.st.Receive(f)
			ac.stMu.Unlock()
		}
		if err != nil {
			ac.end(err, false)
			return
		}
		p := s.render(ac, f.Data, rd)
		ac.inflight.Add(1)
		s.commitReqs <- p // the committer outlives every connection
		if testHookReceived != nil {
			testHookReceived()
		}
	}
}

// render prepares a DATA frame read by rd for the committer. Without a
// prefix to write (no WriteIdentity, no WriteReceived) the frame's memory is
// detached from rd and its records are written from there, each followed
// by a newline, with no copy in Go (output.writeLines); likewise a Store
// gets the payloads where they are. With a prefix, each record is rendered
// into its output line.
func (s *Server) render(ac *ackedConn, d wire.Data, rd *wire.Reader) *pending {
	n := len(d.Records)
	rb := renderPool.Get().(*renderBuf)
	p := &pending{c: ac, id: d.FrameID, rb: rb, keys: slices.Grow(rb.keys[:0], n)[:n]}
	for i := range d.Records {
		p.keys[i] = d.Records[i].ID.Msg()
	}
	if s.opts.Store != nil || !s.opts.WriteIdentity && !s.opts.WriteReceived {
		rb.body, rb.recs = rd.Detach(rb.body, rb.recs)
		p.recs = d.Records // now in rb.recs, their Data in rb.body
		if s.opts.Store == nil {
			for i := range p.recs {
				cleanInPlace(p.recs[i].Data)
			}
		}
		return p
	}
	size := 0
	for _, r := range d.Records {
		size += len(r.Data) + 1
		if s.opts.WriteIdentity {
			size += len(r.ID.Stream) + 2*20 + 3
		}
		if s.opts.WriteReceived {
			size += 21
		}
	}
	var received int64
	if s.opts.WriteReceived {
		received = time.Now().UnixNano()
	}
	p.ends = slices.Grow(rb.ends[:0], n)[:n]
	p.lines = slices.Grow(rb.lines[:0], size)
	for i, r := range d.Records {
		if s.opts.WriteReceived {
			p.lines = strconv.AppendInt(p.lines, received, 10)
			p.lines = append(p.lines, '\t')
		}
		if s.opts.WriteIdentity {
			p.lines = appendClean(p.lines, r.ID.Stream)
			p.lines = append(p.lines, ':')
			p.lines = strconv.AppendUint(p.lines, r.ID.Seq, 10)
			p.lines = append(p.lines, ':')
			p.lines = strconv.AppendUint(p.lines, uint64(r.ID.Index), 10)
			p.lines = append(p.lines, '\t')
		}
		p.lines = appendClean(p.lines, string(r.Data))
		p.lines = append(p.lines, '\n')
		p.ends[i] = len(p.lines)
	}
	return p
}

// renderBuf holds the memory of one rendered frame, reused through
// renderPool: a frame's buffers are needed only until its group commit has
// written them, so the committer gives them back (pending.release) before
// the frame goes to its acker.
type renderBuf struct {
	lines []byte
	keys  []record.MsgID
	ends  []int
	body  []byte          // a detached frame body (wire.Reader.Detach)
	recs  []record.Record // and its records
}

var renderPool = sync.Pool{New: func() any { return new(renderBuf) }}

// appendClean appends s with every newline (and, since a line may be
// carried by CRLF-aware tools, carriage return) replaced by a space: one
// record must stay one line. For JSON, the payload sluice sends, a raw
// newline can only be insignificant whitespace, so nothing changes meaning.
func appendClean(dst []byte, s string) []byte {
	// Records hardly ever hold either byte: two vectorised searches, then
	// one copy, instead of a loop over every byte.
	if strings.IndexByte(s, '\n') < 0 && strings.IndexByte(s, '\r') < 0 {
		return append(dst, s...)
	}
	start := len(dst)
	dst = append(dst, s...)
	for i := start; i < len(dst); i++ {
		if dst[i] == '\n' || dst[i] == '\r' {
			dst[i] = ' '
		}
	}
	return dst
}

// cleanInPlace replaces every newline and carriage return in b with a
// space, as appendClean does while copying.
func cleanInPlace(b []byte) {
	if bytes.IndexByte(b, '\n') < 0 && bytes.IndexByte(b, '\r') < 0 {
		return
	}
	for i, c := range b {
		if c == '\n' || c == '\r' {
			b[i] = ' '
		}
	}
}

// runAcker writes the ACKs of the frames the committer hands back, in
// order, one ACK for every run of durable frames waiting at once. A failed
// frame ends the session with CLOSE INTERNAL; later frames are not
// acknowledged.
func (ac *ackedConn) runAcker() {
	var upTo uint64
	n := 0 // frames covered by upTo and not yet released from inflight
	flush := func() {
		if n == 0 {
			return
		}
		ac.ack(upTo)
		for range n {
			ac.inflight.Done()
		}
		n = 0
	}
	for p := range ac.acks {
		if p.err != nil {
			flush()
			ac.giveUp(p.err)
			ac.inflight.Done()
			continue
		}
		upTo = p.id
		n++
		if len(ac.acks) == 0 {
			flush()
		}
	}
	flush()
}

// ack sends ACK upTo unless the connection was given up.
func (ac *ackedConn) ack(upTo uint64) {
	s := ac.s
	ac.wmu.Lock()
	closed := ac.closed
	ac.wmu.Unlock()
	if closed {
		return
	}
	if err := ackBefore.Hit(s.ctx); errors.Is(err, fault.ErrInjected) || errors.Is(err, fault.ErrInjectedClose) {
		s.connError(ac.conn, ReasonInjected, fmt.Errorf("drain.ack.before: %w", err))
		ac.abort()
		return
	}
	ac.stMu.Lock()
	a, err := ac.st.Ack(upTo)
	ac.stMu.Unlock()
	if err != nil { // a bug: acks are built in frame order
		ac.giveUp(err)
		return
	}
	ac.wmu.Lock()
	defer ac.wmu.Unlock()
	if ac.closed {
		return
	}
	ac.wbuf = wire.AppendAck(ac.wbuf[:0], a)
	ac.nc.SetWriteDeadline(time.Now().Add(s.opts.AckWriteTimeout))
	_, err = ac.nc.Write(ac.wbuf)
	ac.nc.SetWriteDeadline(time.Time{})
	if err != nil {
		ac.closed = true
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.connError(ac.conn, ReasonAckTimeout, fmt.Errorf("%w: ACK %d not taken within %v; closing", ErrAckTimeout, upTo, s.opts.AckWriteTimeout))
		} else {
			s.connError(ac.conn, ReasonWrite, fmt.Errorf("drain: write ACK: %w", err))
		}
		ac.nc.Close() // wakes the reader
		return
	}
	if testHookAck != nil {
		testHookAck()
	}
}

// giveUp ends the session after the drainer failed to make a frame durable:
// CLOSE INTERNAL, then nothing more is acknowledged.
func (ac *ackedConn) giveUp(err error) {
	ac.wmu.Lock()
	defer ac.wmu.Unlock()
	if ac.closed {
		return
	}
	reason := ReasonOutput
	if errors.Is(err, fault.ErrInjected) || errors.Is(err, fault.ErrInjectedClose) {
		reason = ReasonInjected
	}
	ac.s.connError(ac.conn, reason, err)
	ac.sendCloseLocked(wire.Close{Code: wire.CodeInternal, Reason: "drainer cannot make records durable: " + err.Error()})
	ac.nc.Close() // wakes the reader
}

// abort drops the connection without another frame.
func (ac *ackedConn) abort() {
	ac.wmu.Lock()
	ac.closed = true
	ac.wmu.Unlock()
	ac.nc.Close()
}

// writeLocked writes b with a write deadline; wmu must be held.
func (ac *ackedConn) writeLocked(b []byte) error {
	ac.nc.SetWriteDeadline(time.Now().Add(ac.s.opts.AckWriteTimeout))
	defer ac.nc.SetWriteDeadline(time.Time{})
	_, err := ac.nc.Write(b)
	return err
}

// sendCloseLocked sends a CLOSE frame (best effort) and marks the session
// closed; wmu must be held.
func (ac *ackedConn) sendCloseLocked(cl wire.Close) {
	if ac.closed {
		return
	}
	ac.closed = true
	ac.wbuf = wire.AppendClose(ac.wbuf[:0], cl)
	ac.writeLocked(ac.wbuf)
}

// end finishes the session after the reader stopped with err: it counts and
// logs why, waits until every frame already handed to the committer is
// acknowledged (or given up), sends the CLOSE the protocol asks for, and
// lingers briefly so the peer reads it rather than a reset. handshake says
// the session never got past HELLO.
func (ac *ackedConn) end(err error, handshake bool) {
	s, c := ac.s, ac.conn
	var cl *wire.Close // the CLOSE to send, if any
	var pe *wire.ProtocolError
	var pc *wire.PeerClosedError
	switch {
	case errors.Is(err, io.EOF):
		if handshake {
			c.log.Debug("connection ended before its HELLO")
		}
	case errors.As(err, &pc):
		lvl := slog.LevelDebug
		if pc.Close.Code != wire.CodeNormal && pc.Close.Code != wire.CodeGoingAway {
			lvl = slog.LevelWarn
		}
		c.log.Log(context.Background(), lvl, "peer closed the session", obs.KeyCode, pc.Close.Code.String(), obs.KeyPeerReason, pc.Close.Reason)
	case errors.Is(err, wire.ErrStreamRewound): // admit logged and counted it
		rc := wire.CloseFor(err)
		cl = &rc
	case errors.As(err, &pe):
		s.m.protoErrors.WithLabelValues(pe.Code.String()).Inc()
		s.connError(c, ReasonProtocol, err)
		cl = &wire.Close{Code: pe.Code, Reason: pe.Error()}
	case errors.Is(err, io.ErrUnexpectedEOF):
		s.connError(c, ReasonTruncated, errors.New("truncated frame: the connection ended inside a frame, which is not acknowledged"))
	case errors.Is(err, os.ErrDeadlineExceeded) && c.stopping():
		cl = &wire.Close{Code: wire.CodeGoingAway, Reason: "drainer shutting down"}
	case errors.Is(err, os.ErrDeadlineExceeded):
		what := "complete frame"
		if handshake {
			what = "HELLO"
		}
		s.connError(c, ReasonSlowPeer, fmt.Errorf("%w: no %s within %v", ErrSlowPeer, what, s.opts.FrameTimeout))
		cl = &wire.Close{Code: wire.CodeTimeout, Reason: fmt.Sprintf("no %s within %v", what, s.opts.FrameTimeout)}
	default:
		ac.wmu.Lock()
		given := ac.closed
		ac.wmu.Unlock()
		if !given && !errors.Is(err, net.ErrClosed) {
			s.connError(c, ReasonRead, err)
		}
	}
	ac.inflight.Wait()
	if cl == nil {
		return
	}
	ac.wmu.Lock()
	sent := !ac.closed
	ac.sendCloseLocked(*cl)
	ac.wmu.Unlock()
	if sent {
		c.linger()
	}
}

// linger half-closes the connection and discards what the peer still sends
// until it closes, for at most lingerTimeout.
func (c *conn) linger() {
	if uc, ok := c.nc.(*net.UnixConn); ok {
		uc.CloseWrite()
	}
	c.setReadDeadline(time.Now().Add(lingerTimeout))
	io.Copy(io.Discard, io.LimitReader(c.nc, 16<<20))
}
