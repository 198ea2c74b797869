package sink_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/record"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/sink"
	"github.com/sluice-dev/sluice/wire"
)

// ackPeer is a test drainer speaking the acked protocol with wire.ServerState.
// It records what each connection delivered and can hold its acks, never
// ack, refuse the handshake, send garbage, or die in the middle of a frame.
type ackPeer struct {
	own wire.Welcome // the server's limits (zero: wire's defaults)

	// hold: do not ack on arrival; ackAll acks what arrived.
	hold bool
	// refuse: answer the first refuse connections' HELLO with CLOSE refuseCode.
	refuse     int
	refuseCode wire.CloseCode
	// garbage: after the WELCOME of the first garbage connections, send
	// these bytes instead of acks.
	garbage    int
	garbageMsg []byte
	// killEvery: after every killEvery-th DATA frame (counted over all
	// connections), up to kills times, write half an ACK and drop the
	// connection without acking that frame.
	killEvery, kills int
	// quiet: record frame counts only (for benchmarks).
	quiet bool

	d *drainer

	mu       sync.Mutex
	frames   map[int][]uint64 // guarded by mu; DATA frame ids by connection
	payloads map[string]int   // guarded by mu; times each record payload arrived
	hellos   []wire.Hello     // guarded by mu
	errs     []error          // guarded by mu; protocol violations the peer saw
	closes   []wire.Close     // guarded by mu; CLOSE frames received from the sink
	live     []*peerConn      // guarded by mu
	total    int              // guarded by mu; DATA frames over all connections
	killed   int              // guarded by mu
}

type peerConn struct {
	mu   sync.Mutex // guards ss and writes to c
	c    net.Conn
	ss   wire.ServerState
	last uint64
}

func startAckPeer(t testing.TB, path string, p *ackPeer) *ackPeer {
	t.Helper()
	p.frames = map[int][]uint64{}
	p.payloads = map[string]int{}
	p.d = startDrainer(t, path, p.handle)
	return p
}

func (p *ackPeer) violation(err error) {
	p.mu.Lock()
	p.errs = append(p.errs, err)
	p.mu.Unlock()
}

func (p *ackPeer) handle(n int, c net.Conn) {
	rd := wire.NewReader(c)
	rd.Limits = wire.Limits{MaxFrameBytes: wire.MaxHandshakeBytes}
	pc := &peerConn{c: c}
	f, err := rd.ReadFrame()
	if err != nil {
		p.violation(fmt.Errorf("conn %d: first frame: %w", n, err))
		return
	}
	p.mu.Lock()
	if f.Type == wire.TypeHello {
		p.hellos = append(p.hellos, f.Hello)
	}
	p.mu.Unlock()
	if n < p.refuse {
		c.Write(wire.AppendClose(nil, wire.Close{Code: p.refuseCode, Reason: "server speaks versions 7..7"}))
		io.Copy(io.Discard, c)
		return
	}
	wel, err := pc.ss.Hello(f, p.own)
	if err != nil {
		p.violation(fmt.Errorf("conn %d: HELLO: %w", n, err))
		return
	}
	b, _ := wire.AppendWelcome(nil, wel)
	if _, err := c.Write(b); err != nil {
		return
	}
	if n < p.garbage {
		c.Write(p.garbageMsg)
	}
	rd.Limits = wel.Limits()
	p.mu.Lock()
	p.live = append(p.live, pc)
	p.mu.Unlock()
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			if pe, ok := errors.AsType[*wire.ProtocolError](err); ok {
				p.violation(fmt.Errorf("conn %d: %w", n, pe))
			}
			return
		}
		if f.Type == wire.TypeClose {
			p.mu.Lock()
			p.closes = append(p.closes, f.Close)
			p.mu.Unlock()
			return
		}
		pc.mu.Lock()
		err = pc.ss.Receive(f)
		pc.mu.Unlock()
		if err != nil {
			p.violation(fmt.Errorf("conn %d: %w", n, err))
			c.Write(wire.AppendClose(nil, wire.CloseFor(err)))
			return
		}
		p.mu.Lock()
		if !p.quiet {
			p.frames[n] = append(p.frames[n], f.Data.FrameID)
			for _, r := range f.Data.Records {
				p.payloads[string(r.Data)]++
			}
		}
		p.total++
		kill := p.killEvery > 0 && p.total%p.killEvery == 0 && p.killed < p.kills
		if kill {
			p.killed++
		}
		p.mu.Unlock()
		pc.mu.Lock()
		pc.last = f.Data.FrameID
		pc.mu.Unlock()
		if kill {
			half := wire.AppendAck(nil, wire.Ack{UpTo: f.Data.FrameID})
			c.Write(half[:len(half)/2])
			return
		}
		if n < p.garbage {
			continue // never acks
		}
		if !p.hold {
			pc.ack()
		}
	}
}

// ack acks everything pc received.
func (pc *peerConn) ack() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.ss.Unacked() == 0 {
		return
	}
	a, err := pc.ss.Ack(pc.last)
	if err != nil {
		return
	}
	pc.c.Write(wire.AppendAck(nil, a))
}

// ackAll acks everything received on every connection.
func (p *ackPeer) ackAll() {
	p.mu.Lock()
	live := slices.Clone(p.live)
	p.mu.Unlock()
	for _, pc := range live {
		pc.ack()
	}
}

func (p *ackPeer) framesOn(n int) []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.frames[n])
}

func (p *ackPeer) totalFrames() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

func (p *ackPeer) violations() []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.errs)
}

// ackedWriter returns a started acked Writer on path with fast backoff.
func ackedWriter(t testing.TB, path string, opts sink.Options) (*sink.Writer, *prometheus.Registry) {
	t.Helper()
	opts.Path = path
	opts.Framing = wire.FramingAcked
	if opts.BackoffMin == 0 {
		opts.BackoffMin = time.Millisecond
		opts.BackoffMax = 20 * time.Millisecond
	}
	return newWriter(t, opts)
}

// msg returns the records of one queue message (stream "T", sequence seq)
// with payloads "<seq>.<index>".
func msg(seq uint64, n int) []record.Record {
	rs := make([]record.Record, n)
	for i := range rs {
		rs[i] = record.Record{ID: record.ID{Stream: "T", Seq: seq, Index: uint32(i)}, Data: fmt.Appendf(nil, "%d.%d", seq, i)}
	}
	return rs
}

// doneLog records done calls.
type doneLog struct {
	mu    sync.Mutex
	calls []string // guarded by mu; "<name>:<err>"
	n     atomic.Int64
}

func (d *doneLog) fn(name string) func(error) {
	return func(err error) {
		d.mu.Lock()
		d.calls = append(d.calls, fmt.Sprintf("%s:%v", name, err))
		d.mu.Unlock()
		d.n.Add(1)
	}
}

func (d *doneLog) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// notes records Notify calls.
type notes struct {
	mu  sync.Mutex
	got []string // guarded by mu; "event/reason"
}

func (n *notes) fn(event, reason string) {
	n.mu.Lock()
	n.got = append(n.got, event+"/"+reason)
	n.mu.Unlock()
}

func (n *notes) has(s string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Contains(n.got, s)
}

// logBuf is a concurrency-safe log sink for asserting on log text.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func waitConnected(t testing.TB, w *sink.Writer) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if !w.Connected() {
			return errors.New("not connected")
		}
		return nil
	})
}

var bg = context.Background()
