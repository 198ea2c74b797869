package sink_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/record"

	"go.uber.org/goleak"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/sink"
)

func TestWriter_Send(t *testing.T) {
	path := socketPath(t)
	log := newLineLog()
	d := startDrainer(t, path, log.handle)
	w, reg := newWriter(t, sink.Options{Path: path})

	frames := [][]record.Record{
		recs(`{"a":1}`),
		recs(`{"b":1}`, `{"b":2}`, `{"b":3}`),
		recs(strings.Repeat("x", 100_000), `{"c":2}`),
	}
	var want []string
	for i, f := range frames {
		var dones atomic.Int32
		if err := w.Send(context.Background(), f, func(err error) {
			if err != nil {
				t.Errorf("frame %d: done(%v), want done(nil)", i, err)
			}
			dones.Add(1)
		}); err != nil {
			t.Fatalf("frame %d: Send: %v", i, err)
		}
		if n := dones.Load(); n != 1 {
			t.Fatalf("frame %d: done called %d times before Send returned, want 1", i, n)
		}
		for _, r := range f {
			want = append(want, string(r.Data))
		}
	}
	// An empty frame is done at once.
	called := false
	if err := w.Send(context.Background(), nil, func(error) { called = true }); err != nil || !called {
		t.Fatalf("empty Send: err %v, done called %v; want nil, true", err, called)
	}

	testkit.WaitFor(t, 10*time.Second, func() error {
		if got := log.count(); got < len(want) {
			return fmt.Errorf("drainer has %d lines, want %d", got, len(want))
		}
		return nil
	})
	if got := log.all(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("drainer got lines %.200q, want %.200q", got, want)
	}
	if n := d.accepted.Load(); n != 1 {
		t.Errorf("drainer accepted %d connections, want 1", n)
	}
	if !w.Connected() {
		t.Error("Connected() = false with the drainer listening")
	}
	if got := total(t, reg, "sluice_sink_reconnects_total"); got != 0 {
		t.Errorf("sluice_sink_reconnects_total = %v over all reasons, want 0", got)
	}
	if got, want := counter(t, reg, "sluice_sink_bytes_total"), float64(len(strings.Join(want, "\n"))+1); got != want {
		t.Errorf("sluice_sink_bytes_total = %v, want %v", got, want)
	}
	if got := counter(t, reg, "sluice_sink_frames_total"); got != 3 {
		t.Errorf("sluice_sink_frames_total = %v, want 3", got)
	}
	if got := counter(t, reg, "sluice_sink_records_total"); got != 6 {
		t.Errorf("sluice_sink_records_total = %v, want 6", got)
	}
	if got := counter(t, reg, "sluice_sink_connected"); got != 1 {
		t.Errorf("sluice_sink_connected = %v, want 1", got)
	}
	for _, r := range []string{sink.ReasonRequested, sink.ReasonWriteError, sink.ReasonPeerClosed} {
		if got := reconnects(t, reg, r); got != 0 {
			t.Errorf("reconnects{%s} = %v, want 0 (the first connect is not a reconnect)", r, got)
		}
	}
}

// frameChecker is a drainer handler that checks that every connection
// carries whole frames only: each line is "w=W f=F i=I n=N pad", the records
// of frame (W, F) arrive contiguously with I = 0..N-1, and no connection
// ends inside a frame or a line.
type frameChecker struct {
	mu   sync.Mutex
	seen map[[2]int]int // guarded by mu; completed frames by (writer, frame)
	errs []string       // guarded by mu
}

func (fc *frameChecker) fail(format string, args ...any) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.errs) < 20 {
		fc.errs = append(fc.errs, fmt.Sprintf(format, args...))
	}
}

func (fc *frameChecker) handle(conn int, c net.Conn) {
	lines := make(chan string, 256)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // reader: split into lines, remember a partial tail
		defer wg.Done()
		defer close(lines)
		buf := make([]byte, 0, 64<<10)
		rd := make([]byte, 32<<10)
		for {
			n, err := c.Read(rd)
			buf = append(buf, rd[:n]...)
			for {
				i := strings.IndexByte(string(buf), '\n')
				if i < 0 {
					break
				}
				lines <- string(buf[:i])
				buf = buf[i+1:]
			}
			if err != nil {
				if len(buf) > 0 {
					fc.fail("conn %d: ended inside a line: %.60q", conn, buf)
				}
				return
			}
		}
	}()
	var cw, cf, cn, next int // the frame in progress; next == 0: none
	for line := range lines {
		var wr, f, i, n int
		if _, err := fmt.Sscanf(line, "w=%d f=%d i=%d n=%d", &wr, &f, &i, &n); err != nil {
			fc.fail("conn %d: malformed line %.60q: %v", conn, line, err)
			continue
		}
		switch {
		case next == 0 && i != 0:
			fc.fail("conn %d: frame w%d/f%d starts at record %d (split across connections?)", conn, wr, f, i)
			continue
		case next == 0:
			cw, cf, cn = wr, f, n
		case wr != cw || f != cf || n != cn || i != next:
			fc.fail("conn %d: record w%d/f%d/%d inside frame w%d/f%d at %d: interleaved", conn, wr, f, i, cw, cf, next)
			next = 0
			continue
		}
		next++
		if next == cn {
			fc.mu.Lock()
			fc.seen[[2]int{cw, cf}]++
			fc.mu.Unlock()
			next = 0
		}
	}
	wg.Wait()
	if next != 0 {
		fc.fail("conn %d: ended inside frame w%d/f%d after %d of %d records (split across connections)", conn, cw, cf, next, cn)
	}
}

// TestWriter_ConcurrentWritersAndReconnects is promise 1's proof: writers at
// full speed while the connection is replaced every millisecond or two, with
// the window between retiring and closing the old connection widened. No
// write may fail (a write to a closed connection would), and every frame
// must arrive whole on one connection.
//
// The write_faults variant also injects write errors before and after
// writes: frames must still arrive whole, at least once each.
func TestWriter_ConcurrentWritersAndReconnects(t *testing.T) {
	t.Run("clean", func(t *testing.T) { stress(t, false) })
	t.Run("write_faults", func(t *testing.T) { stress(t, true) })
}

func stress(t *testing.T, faulty bool) {
	const (
		writers       = 8
		minFrames     = 300  // per writer
		maxFrames     = 4000 // per writer: the loop's bound
		minReconnects = 200
	)
	bc, ok := fault.Lookup("sink.reconnect.before_close")
	if !ok {
		t.Fatal("fault point sink.reconnect.before_close is not registered")
	}
	bc.Set(&fault.Action{Kind: fault.Delay, Min: time.Millisecond})
	t.Cleanup(func() { bc.Set(nil) })

	var wb, wa *fault.Point
	var hits0 uint64
	if faulty {
		wb, _ = fault.Lookup("sink.write.before")
		wa, _ = fault.Lookup("sink.write.after")
		hits0 = wb.Hits() + wa.Hits()
		wb.Set(&fault.Action{Kind: fault.Error, Prob: 0.01})
		wa.Set(&fault.Action{Kind: fault.Error, Prob: 0.01})
		t.Cleanup(func() { wb.Set(nil); wa.Set(nil) })
	}

	path := socketPath(t)
	fc := &frameChecker{seen: map[[2]int]int{}}
	d := startDrainer(t, path, fc.handle)
	w, reg := newWriter(t, sink.Options{Path: path, BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond})

	stop := make(chan struct{})
	var reconWG sync.WaitGroup
	reconWG.Add(1)
	go func() { // the reconnecter: every ~1ms, bounded in count
		defer reconWG.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for range 100_000 {
			select {
			case <-stop:
				return
			case <-tick.C:
				w.Reconnect(sink.ReasonRequested)
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second) // stall guard
	defer cancel()
	sent := make([]int, writers)
	var wg sync.WaitGroup
	for wr := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pad := strings.Repeat("p", 40+wr*10)
			for f := 0; f < maxFrames; f++ {
				if f >= minFrames && reconnects(t, reg, sink.ReasonRequested) >= minReconnects {
					break
				}
				n := 1 + (f+wr)%7
				rs := make([]record.Record, n)
				for i := range rs {
					rs[i].Data = fmt.Appendf(nil, "w=%d f=%d i=%d n=%d %s", wr, f, i, n, pad)
				}
				var dones atomic.Int32
				if err := w.Send(ctx, rs, func(err error) {
					if err == nil {
						dones.Add(1)
					}
				}); err != nil {
					t.Errorf("writer %d frame %d: Send: %v", wr, f, err)
					return
				}
				if dones.Load() != 1 {
					t.Errorf("writer %d frame %d: done called %d times, want 1", wr, f, dones.Load())
				}
				sent[wr] = f + 1
			}
		}()
	}
	wg.Wait()
	close(stop)
	reconWG.Wait()
	bc.Set(nil)
	var injected uint64
	if faulty {
		wb.Set(nil)
		wa.Set(nil)
		injected = wb.Hits() + wa.Hits() - hits0
	}

	// Every completed dial is one connection at the drainer; all but the
	// first are reconnects (requested, or after an injected write error),
	// each counted once.
	testkit.WaitFor(t, 20*time.Second, func() error {
		got := reconnects(t, reg, sink.ReasonRequested) + reconnects(t, reg, sink.ReasonWriteError)
		if accepted := d.accepted.Load(); int64(got) != accepted-1 {
			return fmt.Errorf("reconnects{requested}+{write_error} = %v, drainer accepted %d connections", got, accepted)
		}
		if all := total(t, reg, "sluice_sink_reconnects_total"); all != got {
			return fmt.Errorf("sluice_sink_reconnects_total = %v over all reasons, %v requested or write_error", all, got)
		}
		return nil
	})
	got := reconnects(t, reg, sink.ReasonRequested)
	w.Close()
	d.finish(t)

	if got < minReconnects {
		t.Errorf("only %v requested reconnects happened, want at least %d: the test did not exercise the race", got, minReconnects)
	}
	// Every failed write is an injected one: none went to a retired or
	// closed connection.
	if n := counter(t, reg, "sluice_sink_write_errors_total"); n != float64(injected) {
		t.Errorf("sluice_sink_write_errors_total = %v, want %d (the injected errors): a write went to a retired or closed connection", n, injected)
	}
	if faulty && injected == 0 {
		t.Error("no write fault fired")
	}
	if n := reconnects(t, reg, sink.ReasonWriteError); n > float64(injected) || (faulty && n == 0) {
		t.Errorf("reconnects{write_error} = %v with %d injected write errors", n, injected)
	}
	for _, r := range []string{sink.ReasonWriteTimeout, sink.ReasonPeerClosed} {
		if n := reconnects(t, reg, r); n != 0 {
			t.Errorf("reconnects{%s} = %v, want 0", r, n)
		}
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, e := range fc.errs {
		t.Error(e)
	}
	total := 0
	for wr := range writers {
		for f := range sent[wr] {
			// A write error injected after a write re-sends a frame
			// that was delivered: a duplicate, whole.
			if c := fc.seen[[2]int{wr, f}]; c < 1 || (!faulty && c != 1) {
				t.Errorf("frame w%d/f%d arrived %d times, want 1 (at least 1 with write faults)", wr, f, c)
			}
		}
		total += sent[wr]
	}
	t.Logf("%d frames over %d connections, %v bytes, %d injected write errors", total, d.accepted.Load(), counter(t, reg, "sluice_sink_bytes_total"), injected)
}

// TestWriter_DrainerRestart stops the drainer while a frame is to be sent:
// Send waits, then completes on the restarted drainer.
func TestWriter_DrainerRestart(t *testing.T) {
	path := socketPath(t)
	log1 := newLineLog()
	d1 := startDrainer(t, path, log1.handle)
	w, reg := newWriter(t, sink.Options{Path: path, BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond})

	if err := w.Send(context.Background(), recs("before"), func(error) {}); err != nil {
		t.Fatal(err)
	}
	d1.stop()
	failuresBefore := counter(t, reg, "sluice_sink_dial_failures_total")

	ch := sendAsync(context.Background(), w, recs("during-1", "during-2"))
	// The drainer is gone: the connector must be failing to dial, and the
	// Send cannot have completed.
	testkit.WaitFor(t, 10*time.Second, func() error {
		if f := counter(t, reg, "sluice_sink_dial_failures_total"); f < failuresBefore+3 {
			return fmt.Errorf("%v dial failures, want at least %v", f, failuresBefore+3)
		}
		return nil
	})
	select {
	case r := <-ch:
		t.Fatalf("Send returned %v with no drainer listening", r.err)
	default:
	}
	if w.Connected() {
		t.Error("Connected() = true with no drainer listening")
	}

	log2 := newLineLog()
	startDrainer(t, path, log2.handle)
	r := await(t, ch)
	if r.err != nil || r.dones != 1 {
		t.Fatalf("Send after restart: err %v, done(nil) called %d times; want nil, 1", r.err, r.dones)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if got := log2.all(); strings.Join(got, ",") != "during-1,during-2" {
			return fmt.Errorf("restarted drainer got %q", got)
		}
		return nil
	})
	lost := reconnects(t, reg, sink.ReasonPeerClosed) + reconnects(t, reg, sink.ReasonWriteError)
	if lost != 1 {
		t.Errorf("reconnects{peer_closed}+{write_error} = %v, want 1", lost)
	}
	if !w.Connected() {
		t.Error("Connected() = false after the drainer came back")
	}
}

// TestWriter_NoDrainer: with nobody listening, Send blocks until its ctx
// ends, and the connector backs off instead of spinning.
func TestWriter_NoDrainer(t *testing.T) {
	path := socketPath(t)
	const backoffMin = 10 * time.Millisecond
	start := time.Now()
	w, reg := newWriter(t, sink.Options{Path: path, BackoffMin: backoffMin, BackoffMax: time.Second})

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	called := false
	err := w.Send(ctx, recs("x"), func(error) { called = true })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send = %v, want context.DeadlineExceeded", err)
	}
	if called {
		t.Error("done was called for a frame that was not delivered")
	}
	failures := counter(t, reg, "sluice_sink_dial_failures_total")
	elapsed := time.Since(start)
	// Every wait is at least BackoffMin, so attempts are bounded by the
	// elapsed time; and the first three waits add up to at most 70ms, so
	// within 500ms there were at least three failures.
	if bound := 1 + float64(elapsed/backoffMin); failures > bound {
		t.Errorf("%v dial failures in %v, want at most %v: the connector spins", failures, elapsed, bound)
	}
	if failures < 3 {
		t.Errorf("%v dial failures in %v, want at least 3: the connector does not retry", failures, elapsed)
	}
	if got := total(t, reg, "sluice_sink_handshake_failures_total"); got != 0 {
		t.Errorf("sluice_sink_handshake_failures_total = %v, want 0: nothing connected, so no handshake ran", got)
	}
	if got := counter(t, reg, "sluice_sink_connected"); got != 0 {
		t.Errorf("sluice_sink_connected = %v, want 0", got)
	}
}

// TestWriter_Close: Close unblocks Sends that wait for a connection and
// Sends in the middle of a write, with ErrClosed, and leaks nothing.
func TestWriter_Close(t *testing.T) {
	t.Run("waiting", func(t *testing.T) {
		defer goleak.VerifyNone(t)
		path := socketPath(t)
		w, reg := newWriter(t, sink.Options{Path: path, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond})
		var chs []<-chan sendResult
		for range 4 {
			chs = append(chs, sendAsync(context.Background(), w, recs("x")))
		}
		testkit.WaitFor(t, 10*time.Second, func() error {
			if counter(t, reg, "sluice_sink_dial_failures_total") < 2 {
				return errors.New("the connector has not tried to dial yet")
			}
			return nil
		})
		if err := w.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		for i, ch := range chs {
			if r := await(t, ch); !errors.Is(r.err, sink.ErrClosed) || r.dones != 0 {
				t.Errorf("Send %d: err %v, dones %d; want ErrClosed, 0", i, r.err, r.dones)
			}
		}
		if err := w.Send(context.Background(), recs("y"), func(error) { t.Error("done called after Close") }); !errors.Is(err, sink.ErrClosed) {
			t.Errorf("Send after Close = %v, want ErrClosed", err)
		}
		if err := w.Close(); err != nil {
			t.Errorf("second Close = %v, want nil", err)
		}
		w.Reconnect("after close") // must not panic or start anything
		w.Start(context.Background())
	})

	t.Run("writing", func(t *testing.T) {
		path := socketPath(t)
		release := make(chan struct{})
		d := startDrainer(t, path, func(_ int, c net.Conn) {
			<-release // never reads: the write blocks
		})
		// WriteTimeout is far beyond the stall guard: only Close can end
		// the write in time.
		// The record is under MaxLineBytes, so it is written, not refused.
		w, _ := newWriter(t, sink.Options{Path: path, WriteTimeout: time.Hour, MaxLineBytes: 16 << 20})
		ch := sendAsync(context.Background(), w, recs(strings.Repeat("z", 8<<20)))
		testkit.WaitFor(t, 10*time.Second, func() error {
			if d.accepted.Load() < 1 || !w.Connected() {
				return errors.New("not connected yet")
			}
			return nil
		})
		closed := make(chan error, 1)
		go func() { closed <- w.Close() }()
		if r := await(t, ch); !errors.Is(r.err, sink.ErrClosed) || r.dones != 0 {
			t.Errorf("Send: err %v, dones %d; want ErrClosed, 0", r.err, r.dones)
		}
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("Close = %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Close stalled")
		}
		close(release)
	})
}

// TestWriter_WriteTimeout: a drainer that stops reading makes the write time
// out; the frame is re-sent whole on a new connection.
func TestWriter_WriteTimeout(t *testing.T) {
	path := socketPath(t)
	log := newLineLog()
	release := make(chan struct{})
	defer close(release)
	startDrainer(t, path, func(n int, c net.Conn) {
		if n == 0 {
			<-release // the first connection is never read
			return
		}
		log.handle(n, c)
	})
	w, reg := newWriter(t, sink.Options{Path: path, WriteTimeout: 250 * time.Millisecond, BackoffMin: time.Millisecond})

	big := strings.Repeat("b", 1<<20)
	frame := recs(big, big, big, big, "tail") // far beyond the socket buffer
	if err := w.Send(context.Background(), frame, func(error) {}); err != nil {
		t.Fatal(err)
	}
	if got := reconnects(t, reg, sink.ReasonWriteTimeout); got != 1 {
		t.Errorf("reconnects{write_timeout} = %v, want 1", got)
	}
	if got := counter(t, reg, "sluice_sink_write_errors_total"); got != 1 {
		t.Errorf("sluice_sink_write_errors_total = %v, want 1", got)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		got := log.on(1)
		if len(got) != 5 || got[4] != "tail" || got[0] != big {
			return fmt.Errorf("second connection has %d lines, want the whole 5-line frame", len(got))
		}
		return nil
	})
}

// TestWriter_MaxConnAge: connections are replaced as they age, with no write
// error and nothing lost.
func TestWriter_MaxConnAge(t *testing.T) {
	path := socketPath(t)
	fc := &frameChecker{seen: map[[2]int]int{}}
	d := startDrainer(t, path, fc.handle)
	w, reg := newWriter(t, sink.Options{Path: path, MaxConnAge: 20 * time.Millisecond})

	sent := 0
	deadline := time.Now().Add(20 * time.Second)
	for f := 0; f < 100_000 && time.Now().Before(deadline); f++ {
		if reconnects(t, reg, sink.ReasonMaxAge) >= 3 {
			break
		}
		rs := []record.Record{
			{Data: fmt.Appendf(nil, "w=0 f=%d i=0 n=2", f)},
			{Data: fmt.Appendf(nil, "w=0 f=%d i=1 n=2", f)},
		}
		if err := w.Send(context.Background(), rs, func(error) {}); err != nil {
			t.Fatal(err)
		}
		sent++
	}
	if got := reconnects(t, reg, sink.ReasonMaxAge); got < 3 {
		t.Fatalf("reconnects{max_age} = %v after %d frames, want at least 3", got, sent)
	}
	// Wait for the drainer to accept every connection before closing the
	// listener, or frames in a connection still in its backlog are lost.
	testkit.WaitFor(t, 10*time.Second, func() error {
		if got, n := reconnects(t, reg, sink.ReasonMaxAge), d.accepted.Load(); int64(got) != n-1 {
			return fmt.Errorf("reconnects{max_age} = %v, drainer accepted %d connections", got, n)
		}
		return nil
	})
	w.Close()
	d.finish(t)
	if n := counter(t, reg, "sluice_sink_write_errors_total"); n != 0 {
		t.Errorf("sluice_sink_write_errors_total = %v, want 0", n)
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, e := range fc.errs {
		t.Error(e)
	}
	for f := range sent {
		if c := fc.seen[[2]int{0, f}]; c != 1 {
			t.Errorf("frame %d arrived %d times, want 1", f, c)
		}
	}
}

// TestWriter_PeerClosed: a drainer that drops the connection is noticed with
// nobody writing, and the sink reconnects.
func TestWriter_PeerClosed(t *testing.T) {
	path := socketPath(t)
	log := newLineLog()
	startDrainer(t, path, func(n int, c net.Conn) {
		if n == 0 {
			return // hang up at once
		}
		log.handle(n, c)
	})
	w, reg := newWriter(t, sink.Options{Path: path, BackoffMin: time.Millisecond})
	testkit.WaitFor(t, 10*time.Second, func() error {
		if got := reconnects(t, reg, sink.ReasonPeerClosed); got != 1 || !w.Connected() {
			return fmt.Errorf("reconnects{peer_closed} = %v, connected %v; want 1, true", got, w.Connected())
		}
		return nil
	})
	if got := counter(t, reg, "sluice_sink_write_errors_total"); got != 0 {
		t.Errorf("write errors = %v, want 0 (nobody wrote)", got)
	}
	if err := w.Send(context.Background(), recs("after"), func(error) {}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if got := log.on(1); len(got) != 1 {
			return fmt.Errorf("second connection got %q", got)
		}
		return nil
	})
}

// TestWriter_FaultPoints: injected failures on the write path are write
// errors; the frame is re-sent whole on a new connection.
func TestWriter_FaultPoints(t *testing.T) {
	for _, tc := range []struct {
		point string
		kind  fault.Kind
		// firstConn is how many copies of the frame the first connection
		// got: 0 when the fault hit before the write, 1 after it.
		firstConn int
	}{
		{"sink.write.before", fault.Error, 0},
		{"sink.write.before", fault.Close, 0},
		{"sink.write.after", fault.Error, 1},
		{"sink.write.after", fault.Close, 1},
	} {
		t.Run(fmt.Sprintf("%s/%d", tc.point, tc.kind), func(t *testing.T) {
			p, ok := fault.Lookup(tc.point)
			if !ok {
				t.Fatalf("fault point %s is not registered", tc.point)
			}
			path := socketPath(t)
			log := newLineLog()
			d := startDrainer(t, path, log.handle)
			w, reg := newWriter(t, sink.Options{Path: path, BackoffMin: time.Millisecond})
			testkit.WaitFor(t, 10*time.Second, func() error {
				if !w.Connected() {
					return errors.New("not connected")
				}
				return nil
			})
			p.Set(&fault.Action{Kind: tc.kind, Count: 1})
			t.Cleanup(func() { p.Set(nil) })

			if err := w.Send(context.Background(), recs("r1", "r2"), func(error) {}); err != nil {
				t.Fatal(err)
			}
			if p.Hits() == 0 {
				t.Fatal("the fault point never fired")
			}
			if got := reconnects(t, reg, sink.ReasonWriteError); got != 1 {
				t.Errorf("reconnects{write_error} = %v, want 1", got)
			}
			if got := counter(t, reg, "sluice_sink_write_errors_total"); got != 1 {
				t.Errorf("write errors = %v, want 1", got)
			}
			// The frame is written: wait for the drainer to accept the
			// connection it sits in before closing the listener.
			testkit.WaitFor(t, 10*time.Second, func() error {
				if n := d.accepted.Load(); n != 2 {
					return fmt.Errorf("drainer accepted %d connections, want 2", n)
				}
				return nil
			})
			w.Close()
			d.finish(t)
			if got := strings.Join(log.on(0), ","); got != strings.Repeat("r1,r2", tc.firstConn) {
				t.Errorf("first connection got %q", got)
			}
			if got := strings.Join(log.on(1), ","); got != "r1,r2" {
				t.Errorf("second connection got %q, want the whole frame; accepted %d, all %q", got, d.accepted.Load(), log.all())
			}
		})
	}
}

// TestWriter_ReconnectRequestsMerged: requests made back to back are all
// counted as requests; those that arrive while one is pending are merged
// into it, so fewer reconnects happen, each counted once, and at least one.
func TestWriter_ReconnectRequestsMerged(t *testing.T) {
	path := socketPath(t)
	g := newLineLog()
	startDrainer(t, path, g.handle)
	w, reg := newWriter(t, sink.Options{Path: path})
	waitConnected(t, w)
	const n = 200
	for range n {
		w.Reconnect(sink.ReasonRequested)
	}
	if got := counter(t, reg, "sluice_sink_reconnect_requests_total"); got != n {
		t.Fatalf("sluice_sink_reconnect_requests_total = %v, want %d", got, n)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if got := reconnects(t, reg, sink.ReasonRequested); got < 1 {
			return fmt.Errorf("reconnects{requested} = %v", got)
		}
		return nil
	})
	if got := reconnects(t, reg, sink.ReasonRequested); got > n {
		t.Fatalf("reconnects{requested} = %v for %d requests", got, n)
	}
}
