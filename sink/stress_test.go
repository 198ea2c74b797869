package sink_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/sink"
	"github.com/sluice-dev/sluice/wire"
)

// This file is the race-widening stress harness of DESIGN.md promise 1, the
// sink's conformance suite: many writers at full speed, reconnects forced
// every few milliseconds (by the sink's Reconnect and by the listener
// dropping connections), the sink.reconnect.before_close window widened by a
// fault delay, and a reader on the socket that checks every frame arrived
// whole, in one piece, on one connection, and that every frame the sink
// reported delivered is there. It runs as one table over every framing
// (TestStress_Writer): in the lines framing the reader checks lines; in the
// acked framing it is a drainer that speaks the protocol, acknowledges each
// frame on arrival and deduplicates by message identity, and the run must
// also show every record exactly once after dedup.
//
// naive_test.go runs the same harness against a sink with the origin bug to
// show that the harness catches it.

// stressSink is what the harness drives: sink.Writer, or the naive sink.
type stressSink interface {
	Send(ctx context.Context, recs []record.Record, done func(error)) error
	Reconnect(reason string)
	Close() error
}

// staleWriter is implemented by sinks that can count their own writes to a
// descriptor that was already closed (EBADF): the naive sink can, a correct
// sink never makes one.
type staleWriter interface{ StaleWrites() uint64 }

// stressOpts bounds and shapes one harness run. The zero value of each field
// means its default.
type stressOpts struct {
	Writers         int           // concurrent writers. 0: 8
	FramesPerWriter int           // frames each writer sends at most. 0: 100000
	Duration        time.Duration // load stops after this long at most. 0: 2s
	ReconnectEvery  time.Duration // period of forced Reconnect calls. 0: 2ms
	DropEvery       time.Duration // period of listener-side drops (shutdown of the newest connection's read side); negative: never. 0: 7ms
	BeforeClose     string        // action on sink.reconnect.before_close during the load ("" leaves it off). e.g. "delay(0ms,3ms)"
	MaxRecords      int           // records per frame are 1..MaxRecords. 0: 48
	RecordPad       int           // payload bytes per record. 0: 100
	Framing         wire.Framing  // what the listener speaks. "": lines
}

func (o *stressOpts) setDefaults() {
	if o.Writers <= 0 {
		o.Writers = 8
	}
	if o.FramesPerWriter <= 0 {
		o.FramesPerWriter = 100000
	}
	if o.Duration <= 0 {
		o.Duration = 2 * time.Second
	}
	if o.ReconnectEvery <= 0 {
		o.ReconnectEvery = 2 * time.Millisecond
	}
	if o.DropEvery == 0 {
		o.DropEvery = 7 * time.Millisecond
	}
	if o.MaxRecords <= 0 {
		o.MaxRecords = 48
	}
	if o.RecordPad <= 0 {
		o.RecordPad = 100
	}
	if o.Framing == "" {
		o.Framing = wire.FramingLines
	}
}

// stressResult is what a harness run saw. Torn, Interleaved, Split, Missing,
// Undone, Strays, DoubleDone, Panics and StaleWrites are failures (see
// Failed); the rest describe the run.
type stressResult struct {
	Sent        int           // frames the sink reported delivered (done(nil))
	SendErrors  int           // Sends that returned an error (frame not delivered)
	Requested   int           // Reconnect calls made
	Drops       int           // connections the listener dropped
	Conns       int           // connections the listener accepted
	Whole       int           // complete frame occurrences the reader saw
	Committed   int           // distinct frames the reader saw whole at least once (acked framing: messages committed after dedup)
	Duplicates  int           // frames seen whole more than once (allowed: lines framing after a failed write; acked framing, re-sent frames the drainer drops by message identity)
	Goodbyes    int           // acked framing: CLOSE NORMAL or GOING_AWAY frames from the sink (connections it ended on purpose)
	Cut         int           // partial frames at the end of a dropped connection (allowed: the sink retries them whole)
	Torn        int           // lines that are not a record this run sent, byte for byte
	Interleaved int           // a frame's records mixed with another frame's on one connection
	Split       int           // a frame that continues on a connection where it did not start, or is cut short on a connection the listener did not drop
	Missing     int           // frames reported delivered but never seen whole (acked framing: a record identity never committed)
	Undone      int           // Sends that returned nil but whose done was never called with nil by the end of the run (acked framing: a frame lost from the window)
	Strays      int           // records found outside the socket (in a file): writes to a recycled descriptor
	DoubleDone  int           // done called more than once for a frame
	Panics      int           // writers that panicked
	StaleWrites uint64        // writes to a closed descriptor, as counted by the sink (staleWriter)
	Elapsed     time.Duration // length of the load phase
	FirstError  string        // the first failure, described
}

// Failed reports whether the run broke promise 1.
func (r stressResult) Failed() bool {
	return r.Torn+r.Interleaved+r.Split+r.Missing+r.Undone+r.Strays+r.DoubleDone+r.Panics > 0 || r.StaleWrites > 0
}

func (r stressResult) String() string {
	return fmt.Sprintf("sent=%d send_errors=%d requested=%d drops=%d conns=%d whole=%d committed=%d dup=%d cut=%d goodbyes=%d | torn=%d interleaved=%d split=%d missing=%d undone=%d strays=%d double_done=%d panics=%d stale_writes=%d | %v first=%q",
		r.Sent, r.SendErrors, r.Requested, r.Drops, r.Conns, r.Whole, r.Committed, r.Duplicates, r.Cut, r.Goodbyes,
		r.Torn, r.Interleaved, r.Split, r.Missing, r.Undone, r.Strays, r.DoubleDone, r.Panics, r.StaleWrites,
		r.Elapsed.Round(time.Millisecond), r.FirstError)
}

// stressRecord renders record i of n of frame f of writer w as one line,
// without the '\n'. Every byte depends on (w, f, i, n), so a line made of two
// records' bytes does not parse back: "S w f i n pad".
func stressRecord(b []byte, w, f, i, n, pad int) []byte {
	b = append(b, 'S', ' ')
	b = strconv.AppendInt(b, int64(w), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(f), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, ' ')
	c := byte('a' + (w*7+f*3+i)%26)
	for range pad {
		b = append(b, c)
	}
	return b
}

// stressFrameLen is the number of records in frame f of writer w:
// deterministic, so the reader knows it without being told.
func stressFrameLen(w, f, max int) int {
	x := uint32(w*2654435761) ^ uint32(f*40503)
	x ^= x >> 13
	x *= 0x5bd1e995
	x ^= x >> 15
	return 1 + int(x%uint32(max))
}

// parseStressRecord is stressRecord's inverse; ok is false unless line is
// exactly what stressRecord makes for the numbers it carries.
func parseStressRecord(line []byte, pad int) (w, f, i, n int, ok bool) {
	fields := bytes.SplitN(line, []byte{' '}, 6)
	if len(fields) != 6 || string(fields[0]) != "S" {
		return 0, 0, 0, 0, false
	}
	var nums [4]int
	for k := range nums {
		v, err := strconv.Atoi(string(fields[k+1]))
		if err != nil || v < 0 {
			return 0, 0, 0, 0, false
		}
		nums[k] = v
	}
	w, f, i, n = nums[0], nums[1], nums[2], nums[3]
	if i >= n || !bytes.Equal(stressRecord(nil, w, f, i, n, pad), line) {
		return 0, 0, 0, 0, false
	}
	return w, f, i, n, true
}

type frameKey struct{ w, f int }

// stressLog is the reader side's account, filled by one goroutine per
// connection.
type stressLog struct {
	mu         sync.Mutex
	whole      map[frameKey]int // guarded by mu; complete occurrences per frame
	cut        int              // guarded by mu
	torn       int              // guarded by mu
	interleave int              // guarded by mu
	split      int              // guarded by mu
	goodbyes   int              // guarded by mu
	first      string           // guarded by mu
}

func (g *stressLog) fail(counter *int, format string, args ...any) {
	*counter++
	if g.first == "" {
		g.first = fmt.Sprintf(format, args...)
	}
}

// stressConn is one accepted connection.
type stressConn struct {
	c       *net.UnixConn
	idx     int
	dropped atomic.Bool // set before the listener shuts the read side down
}

// read checks one connection's stream of lines until EOF.
func (g *stressLog) read(sc *stressConn, opts stressOpts) {
	r := bufio.NewReaderSize(sc.c, 64<<10)
	var (
		cur   frameKey
		in    bool // a frame is in progress: cur, next of n
		bad   bool // the frame in progress did not start here: never counted whole
		next  int
		n     int
		lines int
	)
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Longer than any record: torn. Skip to the next newline.
			g.mu.Lock()
			g.fail(&g.torn, "conn %d: over-long line", sc.idx)
			g.mu.Unlock()
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			continue
		}
		if err != nil {
			g.mu.Lock()
			switch {
			case len(line) > 0 && !sc.dropped.Load():
				g.fail(&g.torn, "conn %d: partial line at EOF of a connection the listener did not drop: %.40q", sc.idx, line)
			case in && !bad && !sc.dropped.Load():
				g.fail(&g.split, "conn %d: frame w%d/f%d cut after %d of %d records at EOF of a connection the listener did not drop", sc.idx, cur.w, cur.f, next, n)
			case in || len(line) > 0:
				g.cut++
			}
			g.mu.Unlock()
			return
		}
		lines++
		w, f, i, rn, ok := parseStressRecord(line[:len(line)-1], opts.RecordPad)
		g.mu.Lock()
		k := frameKey{w, f}
		switch {
		case !ok:
			g.fail(&g.torn, "conn %d line %d: torn record %.60q", sc.idx, lines, line)
			in, bad = false, false
		case rn != stressFrameLen(w, f, opts.MaxRecords):
			g.fail(&g.torn, "conn %d line %d: record claims %d records for w%d/f%d", sc.idx, lines, rn, w, f)
			in, bad = false, false
		case in && k == cur && i == next:
			next++
		case in:
			g.fail(&g.interleave, "conn %d line %d: record %d of w%d/f%d inside frame w%d/f%d (at %d of %d)", sc.idx, lines, i, w, f, cur.w, cur.f, next, n)
			in, bad = false, false
			if i == 0 {
				cur, in, next, n = k, true, 1, rn
			}
		case i != 0:
			g.fail(&g.split, "conn %d line %d: frame w%d/f%d starts at record %d: its beginning went elsewhere", sc.idx, lines, w, f, i)
			cur, in, next, n, bad = k, true, i+1, rn, true
		default:
			cur, in, next, n, bad = k, true, 1, rn, false
		}
		if in && next == n {
			if !bad {
				g.whole[cur]++
			}
			in, bad = false, false
		}
		g.mu.Unlock()
	}
}

// readAcked is read for the acked framing: it answers the handshake, checks
// every frame with the protocol's own checks (so a torn or interleaved
// frame is a protocol error: torn), acknowledges each DATA frame at once and
// commits each queue message, deduplicated by its identity (stream, seq):
// whole counts a message's arrivals, the first one commits it. Each message
// must arrive whole in one frame: records 0..n-1 of writer frame (w, f),
// with identity STRESS/(w<<32|f)/i and the bytes stressRecord makes for it.
func (g *stressLog) readAcked(sc *stressConn, opts stressOpts) {
	rd := wire.NewReader(sc.c)
	rd.Limits = wire.Limits{MaxFrameBytes: wire.MaxHandshakeBytes}
	var ss wire.ServerState
	f, err := rd.ReadFrame()
	if err != nil {
		g.endAcked(sc, err, false)
		return
	}
	wel, err := ss.Hello(f, wire.Welcome{})
	if err != nil {
		g.endAcked(sc, err, false)
		return
	}
	b, _ := wire.AppendWelcome(nil, wel)
	if _, err := sc.c.Write(b); err != nil {
		return
	}
	rd.Limits = wel.Limits()
	var ack []byte
	for frames := 1; ; frames++ {
		f, err := rd.ReadFrame()
		if err == nil {
			err = ss.Receive(f)
		}
		if err != nil {
			g.endAcked(sc, err, true)
			return
		}
		g.mu.Lock()
		recs := f.Data.Records
		for i := 0; i < len(recs); {
			id := recs[i].ID
			j := i
			for j < len(recs) && recs[j].ID.Stream == id.Stream && recs[j].ID.Seq == id.Seq {
				j++
			}
			g.commit(sc, frames, recs[i:j], opts)
			i = j
		}
		g.mu.Unlock()
		a, err := ss.Ack(f.Data.FrameID)
		if err != nil {
			g.mu.Lock()
			g.fail(&g.torn, "conn %d: listener cannot ack frame %d: %v", sc.idx, f.Data.FrameID, err)
			g.mu.Unlock()
			return
		}
		ack = wire.AppendAck(ack[:0], a)
		if _, err := sc.c.Write(ack); err != nil {
			// The sink went away; read what it sent before.
			continue
		}
	}
}

// commit checks one message's records (recs, all with one identity) and
// commits it. Called with g.mu held.
func (g *stressLog) commit(sc *stressConn, frame int, recs []record.Record, opts stressOpts) {
	id := recs[0].ID
	w, f := int(id.Seq>>32), int(id.Seq&(1<<32-1))
	n := stressFrameLen(w, f, opts.MaxRecords)
	if id.Stream != "STRESS" || len(recs) != n {
		g.fail(&g.split, "conn %d frame %d: message %s/%d has %d records, want %d in one frame", sc.idx, frame, id.Stream, id.Seq, len(recs), n)
		return
	}
	for i, r := range recs {
		rw, rf, ri, rn, ok := parseStressRecord(r.Data, opts.RecordPad)
		if !ok || rw != w || rf != f || ri != i || rn != n || r.ID.Index != uint32(i) {
			g.fail(&g.torn, "conn %d frame %d: record %s/%d/%d carries %.60q", sc.idx, frame, r.ID.Stream, r.ID.Seq, r.ID.Index, r.Data)
			return
		}
	}
	g.whole[frameKey{w, f}]++
}

// endAcked accounts for how an acked connection ended.
func (g *stressLog) endAcked(sc *stressConn, err error, welcomed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	pc, peerClosed := errors.AsType[*wire.PeerClosedError](err)
	_, proto := errors.AsType[*wire.ProtocolError](err)
	switch {
	case peerClosed && (pc.Close.Code == wire.CodeNormal || pc.Close.Code == wire.CodeGoingAway):
		g.goodbyes++
	case peerClosed:
		g.fail(&g.torn, "conn %d: the sink closed with %v (%q)", sc.idx, pc.Close.Code, pc.Close.Reason)
	case proto:
		g.fail(&g.torn, "conn %d: %v", sc.idx, err)
	case errors.Is(err, io.ErrUnexpectedEOF) && sc.dropped.Load():
		g.cut++
	case errors.Is(err, io.ErrUnexpectedEOF):
		g.fail(&g.split, "conn %d: frame cut short at EOF of a connection the listener did not drop: %v", sc.idx, err)
	case errors.Is(err, io.EOF), sc.dropped.Load():
	case !welcomed:
		// The sink may give up on a connection before its handshake.
	default:
		g.fail(&g.torn, "conn %d: read: %v", sc.idx, err)
	}
}

// stressListener accepts connections on a Unix socket, reads each with
// stressLog.read, and drops connections on request.
type stressListener struct {
	ln   *net.UnixListener
	log  *stressLog
	opts stressOpts
	mu   sync.Mutex
	all  []*stressConn // guarded by mu
	wg   sync.WaitGroup
}

func startStressListener(t testing.TB, path string, g *stressLog, opts stressOpts) *stressListener {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	s := &stressListener{ln: ln, log: g}
	s.opts = opts
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			s.serve(c)
		}
	}()
	return s
}

// serve reads c in a goroutine of its own.
func (s *stressListener) serve(c *net.UnixConn) {
	s.mu.Lock()
	sc := &stressConn{c: c, idx: len(s.all)}
	s.all = append(s.all, sc)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer c.Close()
		if s.opts.Framing == wire.FramingAcked {
			s.log.readAcked(sc, s.opts)
		} else {
			s.log.read(sc, s.opts)
		}
	}()
}

// acceptBacklog accepts, without blocking, every connection still waiting in
// the listen backlog. A Unix socket connect completes, and the sink may
// write to the connection, before the listener accepts it: closing the
// listener with such a connection pending would throw away frames the sink
// rightly reported delivered.
func (s *stressListener) acceptBacklog(t testing.TB) {
	t.Helper()
	rc, err := s.ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	err = rc.Control(func(lfd uintptr) {
		for { // the listener is non-blocking: EAGAIN once the backlog is empty
			fd, _, err := syscall.Accept4(int(lfd), syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK)
			if err != nil {
				return
			}
			fds = append(fds, fd)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "backlog")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		s.serve(c.(*net.UnixConn))
	}
}

// drop shuts down the read side of the newest connection, as a drainer that
// stops reading would: the sink's next write to it fails, and the reader
// still reads everything queued before the shutdown (so a frame whose Write
// succeeded is never thrown away by the listener).
func (s *stressListener) drop() bool {
	s.mu.Lock()
	var sc *stressConn
	if len(s.all) > 0 {
		sc = s.all[len(s.all)-1]
	}
	s.mu.Unlock()
	if sc == nil || sc.dropped.Load() {
		return false
	}
	sc.dropped.Store(true)
	_ = sc.c.CloseRead()
	return true
}

func (s *stressListener) conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.all)
}

// finish accepts what is left in the backlog (call it after the sink was
// closed, so nothing new arrives), stops accepting, and waits for every
// connection to reach EOF, which it does once the sink closed it. A sink that leaks a connection would hang
// here; the stall guard turns that into a failure message.
func (s *stressListener) finish(t testing.TB) {
	t.Helper()
	s.acceptBacklog(t)
	s.ln.Close()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.mu.Lock()
		for _, sc := range s.all {
			sc.c.Close()
		}
		s.mu.Unlock()
		<-done
		t.Error("stress: connections still open 30s after the sink was closed (leaked descriptors?)")
	}
}

// stressDir returns a fresh directory with a short path, for the socket.
func stressDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sks")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// runStress runs one bounded load against the sink newSink returns for the
// socket path, and reports what the reader saw. newSink's sink must be
// started; the harness closes it. strays, if not nil, is called after the sink
// was closed and returns the bytes the sink may have written outside the
// socket (files that took a recycled descriptor number); records found there
// count as Strays.
func runStress(t testing.TB, newSink func(path string) stressSink, opts stressOpts, strays func() []byte) stressResult {
	t.Helper()
	opts.setDefaults()
	if len(arenaCheck(opts)) == 0 {
		t.Fatal("stress: record rendering is broken")
	}
	path := filepath.Join(stressDir(t), "s.sock")
	g := &stressLog{whole: map[frameKey]int{}}
	ln := startStressListener(t, path, g, opts)

	if opts.BeforeClose != "" {
		p, ok := fault.Lookup("sink.reconnect.before_close")
		if !ok {
			t.Fatal("fault point sink.reconnect.before_close is not registered")
		}
		a, err := fault.ParseAction(opts.BeforeClose)
		if err != nil {
			t.Fatal(err)
		}
		old := p.Swap(a)
		defer p.Set(old)
	}

	s := newSink(path)
	var res stressResult

	// done[w][f]: how many times done(nil) was called for the frame;
	// accepted[w][f]: its Send returned nil, so done(nil) is owed.
	done := make([][]atomic.Int32, opts.Writers)
	accepted := make([][]bool, opts.Writers)
	for w := range done {
		done[w] = make([]atomic.Int32, opts.FramesPerWriter)
		accepted[w] = make([]bool, opts.FramesPerWriter)
	}
	var owed, paid atomic.Int64 // Sends that returned nil; done(nil) calls
	var sendErrs, panics atomic.Int64
	var errMu sync.Mutex
	var firstSendErr error

	// A stall guard only: a Send still blocked this long after the load
	// ended makes the run fail instead of hang.
	ctx, cancel := context.WithTimeout(context.Background(), opts.Duration+20*time.Second)
	defer cancel()
	start := time.Now()
	deadline := start.Add(opts.Duration)
	stop := make(chan struct{})

	var writers sync.WaitGroup
	for w := range opts.Writers {
		writers.Add(1)
		go func() {
			defer writers.Done()
			defer func() {
				if r := recover(); r != nil {
					panics.Add(1)
					errMu.Lock()
					if firstSendErr == nil {
						firstSendErr = fmt.Errorf("writer %d panicked: %v", w, r)
					}
					errMu.Unlock()
				}
			}()
			var arena []byte
			var ends []int
			for f := 0; f < opts.FramesPerWriter && time.Now().Before(deadline); f++ {
				n := stressFrameLen(w, f, opts.MaxRecords)
				recs := make([]record.Record, n)
				arena, ends = arena[:0], ends[:0]
				for i := range n {
					arena = stressRecord(arena, w, f, i, n, opts.RecordPad)
					ends = append(ends, len(arena))
				}
				// Slice the arena only after it stopped growing.
				for i, from := 0, 0; i < n; i++ {
					recs[i] = record.Record{
						ID:   record.ID{Stream: "STRESS", Seq: uint64(w)<<32 | uint64(f), Index: uint32(i)},
						Data: arena[from:ends[i]:ends[i]],
					}
					from = ends[i]
				}
				ctr := &done[w][f]
				err := s.Send(ctx, recs, func(err error) {
					if err == nil {
						ctr.Add(1)
						paid.Add(1)
					}
				})
				if err == nil {
					accepted[w][f] = true
					owed.Add(1)
				} else {
					sendErrs.Add(1)
					errMu.Lock()
					if firstSendErr == nil {
						firstSendErr = err
					}
					errMu.Unlock()
				}
			}
		}()
	}
	// The reconnect driver and the dropper run until the writers are done.
	var drivers sync.WaitGroup
	var requested, drops atomic.Int64
	drivers.Add(1)
	go func() {
		defer drivers.Done()
		tick := time.NewTicker(opts.ReconnectEvery)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				s.Reconnect("stress")
				requested.Add(1)
			}
		}
	}()
	if opts.DropEvery > 0 {
		drivers.Add(1)
		go func() {
			defer drivers.Done()
			tick := time.NewTicker(opts.DropEvery)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if ln.drop() {
						drops.Add(1)
					}
				}
			}
		}()
	}

	writers.Wait()
	res.Elapsed = time.Since(start)
	close(stop)
	drivers.Wait()
	// Let the sink finish what it accepted (the acked framing's window
	// drains once the reconnects stop), bounded by a stall guard; what is
	// still owed after it counts as Undone.
	for settle := time.Now().Add(20 * time.Second); paid.Load() < owed.Load() && time.Now().Before(settle); {
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Errorf("stress: Close: %v", err)
	}
	ln.finish(t)

	if sw, ok := s.(staleWriter); ok {
		res.StaleWrites = sw.StaleWrites()
	}
	res.SendErrors = int(sendErrs.Load())
	res.Panics = int(panics.Load())
	res.Requested = int(requested.Load())
	res.Drops = int(drops.Load())
	res.Conns = ln.conns()

	g.mu.Lock()
	defer g.mu.Unlock()
	res.Torn, res.Interleaved, res.Split, res.Cut, res.Goodbyes = g.torn, g.interleave, g.split, g.cut, g.goodbyes
	res.FirstError = g.first
	for _, n := range g.whole {
		res.Whole += n
		res.Committed++
		if n > 1 {
			res.Duplicates++
		}
	}
	for w := range done {
		for f := range done[w] {
			switch d := done[w][f].Load(); {
			case d == 0 && accepted[w][f]:
				res.Undone++
				if res.FirstError == "" {
					res.FirstError = fmt.Sprintf("frame w%d/f%d: Send returned nil, done(nil) never called", w, f)
				}
				continue
			case d == 0:
				continue
			case d > 1:
				res.DoubleDone++
			}
			res.Sent++
			if g.whole[frameKey{w, f}] == 0 {
				res.Missing++
				if res.FirstError == "" {
					res.FirstError = fmt.Sprintf("frame w%d/f%d reported delivered but never seen whole", w, f)
				}
			}
		}
	}
	if strays != nil {
		for line := range bytes.SplitSeq(strays(), []byte{'\n'}) {
			if _, _, _, _, ok := parseStressRecord(line, opts.RecordPad); ok {
				res.Strays++
			}
		}
		if res.Strays > 0 && res.FirstError == "" {
			res.FirstError = fmt.Sprintf("%d records written to a file that took a recycled descriptor", res.Strays)
		}
	}
	if res.FirstError == "" && firstSendErr != nil && (res.Panics > 0) {
		res.FirstError = firstSendErr.Error()
	}
	if res.FirstError == "" && res.StaleWrites > 0 {
		res.FirstError = fmt.Sprintf("%d writes to a closed descriptor (EBADF)", res.StaleWrites)
	}
	if firstSendErr != nil {
		t.Logf("stress: first Send error: %v", firstSendErr)
	}
	return res
}

// arenaCheck renders one record and parses it back: a self-check of the
// record format, so a broken format cannot make every run pass.
func arenaCheck(opts stressOpts) []byte {
	b := stressRecord(nil, 3, 5, 1, 2, opts.RecordPad)
	if _, _, _, _, ok := parseStressRecord(b, opts.RecordPad); !ok {
		return nil
	}
	return b
}

// TestStress_Writer drives the real sink through the harness, once per
// framing: 8 writers at full speed, a requested reconnect every 2ms and a
// dropped connection every 7ms, with the before_close window widened by a
// random delay of up to 3ms, under -race. Nothing may be torn, interleaved,
// split, missing or left undone. The acked framing must also deliver every
// record exactly once after the drainer's dedup by message identity (each
// message committed once, whole), and say goodbye (CLOSE NORMAL or
// GOING_AWAY) on the connections it ends on purpose.
func TestStress_Writer(t *testing.T) {
	for _, framing := range wire.Framings {
		t.Run(string(framing), func(t *testing.T) {
			opts := stressOpts{
				Duration:    2 * time.Second,
				BeforeClose: "delay(0ms,3ms)",
				Framing:     framing,
			}
			if testing.Short() {
				opts.Duration = 500 * time.Millisecond
			}
			res := runStress(t, func(path string) stressSink {
				w := sink.New(sink.Options{
					Path:         path,
					Logger:       discard,
					BackoffMin:   time.Millisecond,
					BackoffMax:   5 * time.Millisecond,
					WriteTimeout: 10 * time.Second,
					Framing:      framing,
				})
				w.Start(context.Background())
				return w
			}, opts, nil)
			t.Logf("real sink, %s framing: %v", framing, res)
			if res.Failed() {
				t.Fatalf("the sink broke promise 1 (%s framing): %v", framing, res)
			}
			if res.SendErrors > 0 {
				t.Errorf("%d Sends failed during the load; the sink should have retried them", res.SendErrors)
			}
			// The run must have exercised what it claims to: frames, and
			// many connections replaced by both kinds of reconnect.
			if res.Sent < 100 || res.Conns < 20 || res.Drops < 5 {
				t.Errorf("the run was too weak to prove anything: %v", res)
			}
			if framing == wire.FramingAcked {
				// Exactly once after dedup: every frame reported done was
				// committed (Missing), none is left undone (Undone), and
				// nothing the drainer committed was not sent.
				if res.Committed != res.Sent {
					t.Errorf("the drainer committed frames the sink never reported done: %v", res)
				}
				if res.Goodbyes == 0 {
					t.Errorf("no CLOSE NORMAL or GOING_AWAY over %d connections the sink replaced: %v", res.Conns, res)
				}
			}
		})
	}
}

// TestStress_Harness checks the reader side itself on hand-made streams:
// each kind of damage is counted as what it is.
func TestStress_Harness(t *testing.T) {
	opts := stressOpts{MaxRecords: 48, RecordPad: 10}
	opts.setDefaults()
	frame := func(w, f int) []byte {
		n := stressFrameLen(w, f, opts.MaxRecords)
		var b []byte
		for i := range n {
			b = append(stressRecord(b, w, f, i, n, opts.RecordPad), '\n')
		}
		return b
	}
	// Pick frames with at least 2 records, so they can be cut.
	var big []frameKey
	for f := 0; len(big) < 2; f++ {
		if stressFrameLen(1, f, opts.MaxRecords) >= 2 {
			big = append(big, frameKey{1, f})
		}
	}
	a, b := frame(big[0].w, big[0].f), frame(big[1].w, big[1].f)
	firstLine := func(x []byte) int { return bytes.IndexByte(x, '\n') + 1 }
	cases := []struct {
		name    string
		stream  []byte
		dropped bool
		check   func(g *stressLog) bool
	}{
		{"whole", append(append([]byte{}, a...), b...), false, func(g *stressLog) bool {
			return g.whole[big[0]] == 1 && g.whole[big[1]] == 1 && g.torn+g.interleave+g.split == 0
		}},
		{"interleaved", append(append(append([]byte{}, a[:firstLine(a)]...), b...), a[firstLine(a):]...), false, func(g *stressLog) bool {
			return g.interleave == 1 && g.whole[big[0]] == 0
		}},
		{"torn", append(append([]byte{}, a[:5]...), b...), false, func(g *stressLog) bool { return g.torn == 1 }},
		{"starts mid-frame", append([]byte{}, a[firstLine(a):]...), false, func(g *stressLog) bool { return g.split == 1 }},
		{"cut, not dropped", append([]byte{}, a[:firstLine(a)]...), false, func(g *stressLog) bool { return g.split == 1 }},
		{"cut, dropped", append([]byte{}, a[:firstLine(a)]...), true, func(g *stressLog) bool { return g.cut == 1 && g.split == 0 }},
		{"garbage", []byte("S 1 2 3\n"), false, func(g *stressLog) bool { return g.torn == 1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c1, c2, err := unixPair(t)
			if err != nil {
				t.Fatal(err)
			}
			g := &stressLog{whole: map[frameKey]int{}}
			sc := &stressConn{c: c2}
			sc.dropped.Store(tc.dropped)
			go func() {
				c1.Write(tc.stream)
				c1.Close()
			}()
			g.read(sc, opts)
			c2.Close()
			if !tc.check(g) {
				t.Errorf("whole=%v torn=%d interleaved=%d split=%d cut=%d first=%q",
					g.whole, g.torn, g.interleave, g.split, g.cut, g.first)
			}
		})
	}
}

// unixPair returns two connected Unix stream connections.
func unixPair(t testing.TB) (*net.UnixConn, *net.UnixConn, error) {
	t.Helper()
	path := filepath.Join(stressDir(t), "p.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	c1, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	c2, err := ln.AcceptUnix()
	if err != nil {
		c1.Close()
		return nil, nil, err
	}
	return c1, c2, nil
}

// TestStress_HarnessAcked checks the acked reader itself: a message
// committed once however often it arrives, a message cut across frames, a
// record whose bytes do not match its identity, a corrupt frame, and the
// sink's goodbye are each counted as what they are.
func TestStress_HarnessAcked(t *testing.T) {
	opts := stressOpts{MaxRecords: 48, RecordPad: 10, Framing: wire.FramingAcked}
	opts.setDefaults()
	var key frameKey // a frame with at least 2 records
	for f := 0; ; f++ {
		if stressFrameLen(1, f, opts.MaxRecords) >= 2 {
			key = frameKey{1, f}
			break
		}
	}
	message := func(k frameKey) []record.Record {
		n := stressFrameLen(k.w, k.f, opts.MaxRecords)
		rs := make([]record.Record, n)
		for i := range rs {
			rs[i] = record.Record{
				ID:   record.ID{Stream: "STRESS", Seq: uint64(k.w)<<32 | uint64(k.f), Index: uint32(i)},
				Data: stressRecord(nil, k.w, k.f, i, n, opts.RecordPad),
			}
		}
		return rs
	}
	data := func(t *testing.T, id uint64, rs []record.Record) []byte {
		t.Helper()
		b, err := wire.AppendData(nil, id, rs, wire.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	whole := message(key)
	wrong := message(key)
	wrong[1].Data = stressRecord(nil, key.w, key.f+1, 1, len(wrong), opts.RecordPad)
	corrupt := data(t, 1, whole)
	corrupt[len(corrupt)-1] ^= 0xff
	cases := []struct {
		name   string
		frames func(t *testing.T) [][]byte
		check  func(g *stressLog) bool
	}{
		{"twice", func(t *testing.T) [][]byte { return [][]byte{data(t, 1, whole), data(t, 2, whole)} }, func(g *stressLog) bool {
			return g.whole[key] == 2 && len(g.whole) == 1 && g.torn+g.split == 0
		}},
		{"cut across frames", func(t *testing.T) [][]byte { return [][]byte{data(t, 1, whole[:1]), data(t, 2, whole[1:])} }, func(g *stressLog) bool {
			return g.split == 2 && len(g.whole) == 0
		}},
		{"wrong bytes", func(t *testing.T) [][]byte { return [][]byte{data(t, 1, wrong)} }, func(g *stressLog) bool {
			return g.torn == 1 && len(g.whole) == 0
		}},
		{"corrupt frame", func(t *testing.T) [][]byte { return [][]byte{corrupt} }, func(g *stressLog) bool {
			return g.torn == 1 && len(g.whole) == 0
		}},
		{"goodbye", func(t *testing.T) [][]byte {
			return [][]byte{data(t, 1, whole), wire.AppendClose(nil, wire.Close{Code: wire.CodeNormal})}
		}, func(g *stressLog) bool {
			return g.goodbyes == 1 && g.whole[key] == 1 && g.torn+g.split == 0
		}},
		{"cut at EOF, not dropped", func(t *testing.T) [][]byte { b := data(t, 1, whole); return [][]byte{b[:len(b)-3]} }, func(g *stressLog) bool {
			return g.split == 1 && len(g.whole) == 0
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c1, c2, err := unixPair(t)
			if err != nil {
				t.Fatal(err)
			}
			hello, err := wire.AppendHello(nil, wire.Hello{MinVersion: wire.Version, MaxVersion: wire.Version, Window: 8, Instance: "harness"})
			if err != nil {
				t.Fatal(err)
			}
			frames := tc.frames(t)
			go func() {
				c1.Write(hello)
				for _, f := range frames {
					c1.Write(f)
				}
				c1.CloseWrite()
				io.Copy(io.Discard, c1) // the WELCOME and ACKs
				c1.Close()
			}()
			g := &stressLog{whole: map[frameKey]int{}}
			g.readAcked(&stressConn{c: c2}, opts)
			c2.Close()
			if !tc.check(g) {
				t.Errorf("whole=%v torn=%d split=%d cut=%d goodbyes=%d first=%q", g.whole, g.torn, g.split, g.cut, g.goodbyes, g.first)
			}
		})
	}
}
