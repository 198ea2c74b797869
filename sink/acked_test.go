package sink_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/record"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/sink"
	"github.com/sluice-dev/sluice/wire"
)

// TestWriter_AckedBasic: frames reach the drainer in DATA frames with ids
// 1, 2, 3; done is called only once the drainer acks, once per Send, in
// order.
func TestWriter_AckedBasic(t *testing.T) {
	path := socketPath(t)
	p := startAckPeer(t, path, &ackPeer{hold: true})
	w, reg := ackedWriter(t, path, sink.Options{Instance: "test-1", WindowFrames: 16})
	var dl doneLog
	for i := range 3 {
		if err := w.Send(bg, msg(uint64(i+1), 2), dl.fn(fmt.Sprint(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if got := p.framesOn(0); len(got) != 3 {
			return fmt.Errorf("peer got frames %v", got)
		}
		return nil
	})
	if got := p.framesOn(0); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("frame ids %v, want [1 2 3]", got)
	}
	if n := dl.n.Load(); n != 0 {
		t.Fatalf("done called %d times before any ack: %v", n, dl.list())
	}
	if got := counter(t, reg, "sluice_sink_window_frames"); got != 3 {
		t.Errorf("window_frames = %v, want 3", got)
	}
	p.ackAll()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := dl.n.Load(); n != 3 {
			return fmt.Errorf("%d dones", n)
		}
		return nil
	})
	if got := dl.list(); !slices.Equal(got, []string{"1:<nil>", "2:<nil>", "3:<nil>"}) {
		t.Errorf("done calls %v", got)
	}
	if got := counter(t, reg, "sluice_sink_acked_frames_total"); got != 3 {
		t.Errorf("acked_frames_total = %v, want 3", got)
	}
	if got := counter(t, reg, "sluice_sink_window_frames"); got != 0 {
		t.Errorf("window_frames = %v, want 0", got)
	}
	p.mu.Lock()
	h := p.hellos[0]
	p.mu.Unlock()
	if h.Instance != "test-1" || h.Window != 16 || h.MinVersion != wire.Version || h.MaxVersion != wire.Version {
		t.Errorf("HELLO = %+v", h)
	}
	for k, v := range map[string]int{"1.0": 1, "1.1": 1, "2.0": 1, "3.1": 1} {
		p.mu.Lock()
		got := p.payloads[k]
		p.mu.Unlock()
		if got != v {
			t.Errorf("payload %s arrived %d times", k, got)
		}
	}
}

// TestWriter_AckedTimeout: a drainer that never acks gets no done; after
// AckTimeout the sink reconnects (ack_timeout) and re-sends the window in
// order with the same ids; acks on the new connection settle them.
func TestWriter_AckedTimeout(t *testing.T) {
	path := socketPath(t)
	p := startAckPeer(t, path, &ackPeer{hold: true})
	var ns notes
	w, reg := ackedWriter(t, path, sink.Options{AckTimeout: 300 * time.Millisecond, Notify: ns.fn})
	var dl doneLog
	for i := range 3 {
		if err := w.Send(bg, msg(uint64(i+1), 1), dl.fn(fmt.Sprint(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 20*time.Second, func() error {
		if got := p.framesOn(1); len(got) != 3 {
			return fmt.Errorf("second connection got %v", got)
		}
		return nil
	})
	if got, want := p.framesOn(1), p.framesOn(0); !slices.Equal(got, want) || !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("re-sent frame ids %v, first connection %v; want [1 2 3] on both", got, want)
	}
	if n := dl.n.Load(); n != 0 {
		t.Fatalf("done called without an ack: %v", dl.list())
	}
	if got := reconnects(t, reg, sink.ReasonAckTimeout); got < 1 {
		t.Errorf("reconnects{ack_timeout} = %v", got)
	}
	if !ns.has("ack_timeout/ack_timeout") || !ns.has("reconnect/ack_timeout") {
		t.Errorf("Notify calls %v", ns.got)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.closes) == 0 || p.closes[0].Code != wire.CodeTimeout {
			return fmt.Errorf("CLOSE frames from the sink %+v, want TIMEOUT first", p.closes)
		}
		return nil
	})
	p.ackAll()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := dl.n.Load(); n != 3 {
			return fmt.Errorf("%d dones", n)
		}
		return nil
	})
	if got := dl.list(); !slices.Equal(got, []string{"1:<nil>", "2:<nil>", "3:<nil>"}) {
		t.Errorf("done calls %v", got)
	}
	if got := counter(t, reg, "sluice_sink_resent_frames_total"); got < 3 {
		t.Errorf("resent_frames_total = %v, want >= 3", got)
	}
}

// TestWriter_AckedReconnectUnderLoad: 8 writers send while the drainer drops
// the connection (mid-ACK) several times. Every Send's done is called once,
// with nil; every record arrives; frame ids on each connection strictly
// increase (so re-sent frames precede new ones); frames were re-sent.
func TestWriter_AckedReconnectUnderLoad(t *testing.T) {
	const writers, perWriter, kills = 8, 150, 6
	path := socketPath(t)
	p := startAckPeer(t, path, &ackPeer{killEvery: 97, kills: kills})
	w, reg := ackedWriter(t, path, sink.Options{WindowFrames: 16})
	var (
		mu    sync.Mutex
		dones = map[uint64]int{}
		bad   []string
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(bg, 60*time.Second) // stall guard
	defer cancel()
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				seq := uint64(g*perWriter + i + 1)
				err := w.Send(ctx, msg(seq, 2), func(err error) {
					mu.Lock()
					defer mu.Unlock()
					dones[seq]++
					if err != nil {
						bad = append(bad, fmt.Sprintf("%d: %v", seq, err))
					}
				})
				if err != nil {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("Send %d: %v", seq, err))
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	testkit.WaitFor(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(dones) != writers*perWriter {
			return fmt.Errorf("%d of %d Sends done", len(dones), writers*perWriter)
		}
		return nil
	})
	mu.Lock()
	for seq, n := range dones {
		if n != 1 {
			t.Errorf("done of %d called %d times", seq, n)
		}
	}
	if len(bad) > 0 {
		t.Errorf("failures: %v", bad)
	}
	mu.Unlock()
	if v := p.violations(); len(v) > 0 {
		t.Errorf("protocol violations seen by the drainer: %v", v)
	}
	p.mu.Lock()
	for seq := 1; seq <= writers*perWriter; seq++ {
		for i := range 2 {
			if p.payloads[fmt.Sprintf("%d.%d", seq, i)] == 0 {
				t.Errorf("record %d.%d never arrived", seq, i)
			}
		}
	}
	for n, ids := range p.frames {
		if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
			t.Errorf("connection %d: frame ids not strictly increasing: %v", n, ids)
		}
	}
	killed := p.killed
	p.mu.Unlock()
	if killed != kills {
		t.Errorf("drainer dropped %d connections, want %d", killed, kills)
	}
	if got := counter(t, reg, "sluice_sink_acked_frames_total"); got != writers*perWriter {
		t.Errorf("acked_frames_total = %v, want %d", got, writers*perWriter)
	}
	if got := counter(t, reg, "sluice_sink_resent_frames_total"); got < kills {
		t.Errorf("resent_frames_total = %v, want >= %d", got, kills)
	}
	// The drop is seen by the ack reader (peer_closed) or by a write that
	// came first (write_error).
	if got := reconnects(t, reg, sink.ReasonPeerClosed) + reconnects(t, reg, sink.ReasonWriteError); got < kills {
		t.Errorf("reconnects{peer_closed or write_error} = %v, want >= %d", got, kills)
	}
	if got := counter(t, reg, "sluice_sink_window_frames"); got != 0 {
		t.Errorf("window holds %v frames after every done", got)
	}
	// Every record is counted delivered once, however often its frame was
	// re-sent; every write, re-sends included, is a frame written.
	if got := counter(t, reg, "sluice_sink_records_total"); got != 2*writers*perWriter {
		t.Errorf("records_total = %v, want %d (each record once)", got, 2*writers*perWriter)
	}
	// (A re-sent frame counts in resent_frames_total when it is handed to
	// the flusher, and in frames_total only if its write completed.)
	resent := counter(t, reg, "sluice_sink_resent_frames_total")
	if got := counter(t, reg, "sluice_sink_frames_total"); got < writers*perWriter || got > writers*perWriter+resent {
		t.Errorf("frames_total = %v, want between %d (each acked frame written once) and %v (plus every re-send)", got, writers*perWriter, writers*perWriter+resent)
	}
}

// TestWriter_AckedWindowFull: a full window (frames, or bytes) blocks Send
// until acks make room; the drainer never has more than the window.
func TestWriter_AckedWindowFull(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts sink.Options
		fit  int
	}{
		{"frames", sink.Options{WindowFrames: 4}, 4},
		// a frame of msg(seq, 1) is 10+14+3+18+4 = 49 bytes (payload "N.0" or "NN.0").
		{"bytes", sink.Options{WindowBytes: 2*49 + 10}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := socketPath(t)
			p := startAckPeer(t, path, &ackPeer{hold: true})
			w, reg := ackedWriter(t, path, tc.opts)
			var dl doneLog
			for i := range tc.fit {
				if err := w.Send(bg, msg(uint64(i+1), 1), dl.fn(fmt.Sprint(i+1))); err != nil {
					t.Fatal(err)
				}
			}
			blocked := sendAsync(bg, w, msg(uint64(tc.fit+1), 1))
			testkit.WaitFor(t, 10*time.Second, func() error {
				if n := p.totalFrames(); n != tc.fit {
					return fmt.Errorf("peer got %d frames", n)
				}
				return nil
			})
			select {
			case r := <-blocked:
				t.Fatalf("Send returned %v with the window full", r.err)
			default:
			}
			if got := counter(t, reg, "sluice_sink_window_frames"); got != float64(tc.fit) {
				t.Errorf("window_frames = %v, want %d", got, tc.fit)
			}
			p.ackAll()
			if r := await(t, blocked); r.err != nil {
				t.Fatal(r.err)
			}
			testkit.WaitFor(t, 10*time.Second, func() error {
				if n := p.totalFrames(); n != tc.fit+1 {
					return fmt.Errorf("peer got %d frames", n)
				}
				return nil
			})
			p.ackAll()
			testkit.WaitFor(t, 10*time.Second, func() error {
				if n := dl.n.Load(); n != int64(tc.fit) {
					return fmt.Errorf("%d dones", n)
				}
				return nil
			})
		})
	}
}

// TestWriter_AckedHandshakeRefused: a CLOSE in answer to HELLO is counted
// by code, logged naming both versions, and retried with backoff.
func TestWriter_AckedHandshakeRefused(t *testing.T) {
	path := socketPath(t)
	p := startAckPeer(t, path, &ackPeer{refuse: 2, refuseCode: wire.CodeUnsupportedVersion})
	var lb logBuf
	w, reg := ackedWriter(t, path, sink.Options{Logger: lb.logger()})
	var dl doneLog
	if err := w.Send(bg, msg(1, 1), dl.fn("1")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := dl.n.Load(); n != 1 {
			return fmt.Errorf("%d dones", n)
		}
		return nil
	})
	if got := counter(t, reg, "sluice_sink_handshake_failures_total", "code", "UNSUPPORTED_VERSION"); got != 2 {
		t.Errorf("handshake_failures{UNSUPPORTED_VERSION} = %v, want 2", got)
	}
	if got := p.d.accepted.Load(); got != 3 {
		t.Errorf("drainer accepted %d connections, want 3", got)
	}
	if s := lb.String(); !strings.Contains(s, fmt.Sprintf("versions %d..%d", wire.Version, wire.Version)) || !strings.Contains(s, "versions 7..7") {
		t.Errorf("log does not name both versions:\n%s", s)
	}
	if got := dl.list(); !slices.Equal(got, []string{"1:<nil>"}) {
		t.Errorf("done calls %v", got)
	}
}

// TestWriter_AckedProtocolError: garbage from the drainer makes the sink
// answer with CLOSE (the code of the violation) and reconnect with reason
// protocol_error; the frame is re-sent and acked on the next connection.
func TestWriter_AckedProtocolError(t *testing.T) {
	for _, tc := range []struct {
		name    string
		garbage []byte
		code    wire.CloseCode
	}{
		{"bad_crc", []byte{0, 0, 0, 8, 1, 2, 3, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1}, wire.CodeBadChecksum},
		{"data_from_server", mustData(t), wire.CodeUnexpectedFrame},
		{"ack_beyond_sent", wire.AppendAck(nil, wire.Ack{UpTo: 1000}), wire.CodeBadAck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := socketPath(t)
			p := startAckPeer(t, path, &ackPeer{garbage: 1, garbageMsg: tc.garbage})
			w, reg := ackedWriter(t, path, sink.Options{})
			var dl doneLog
			if err := w.Send(bg, msg(1, 1), dl.fn("1")); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, 10*time.Second, func() error {
				if n := dl.n.Load(); n != 1 {
					return fmt.Errorf("%d dones", n)
				}
				return nil
			})
			if got := reconnects(t, reg, sink.ReasonProtocolError); got != 1 {
				t.Errorf("reconnects{protocol_error} = %v, want 1", got)
			}
			testkit.WaitFor(t, 10*time.Second, func() error {
				p.mu.Lock()
				defer p.mu.Unlock()
				if len(p.closes) == 0 {
					return errors.New("no CLOSE from the sink")
				}
				if p.closes[0].Code != tc.code {
					return fmt.Errorf("CLOSE %v (%q), want %v", p.closes[0].Code, p.closes[0].Reason, tc.code)
				}
				return nil
			})
			if got := dl.list(); !slices.Equal(got, []string{"1:<nil>"}) {
				t.Errorf("done calls %v", got)
			}
		})
	}
}

func mustData(t *testing.T) []byte {
	b, err := wire.AppendData(nil, 1, []record.Record{{ID: record.ID{Stream: "X", Seq: 1}}}, wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWriter_AckedClose: Close calls done(ErrClosed) for every frame still in
// the window, exactly once, and a Send waiting for room returns ErrClosed.
func TestWriter_AckedClose(t *testing.T) {
	path := socketPath(t)
	p := startAckPeer(t, path, &ackPeer{hold: true})
	w, _ := ackedWriter(t, path, sink.Options{WindowFrames: 3})
	var dl doneLog
	for i := range 3 {
		if err := w.Send(bg, msg(uint64(i+1), 1), dl.fn(fmt.Sprint(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	blocked := sendAsync(bg, w, msg(4, 1))
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := p.totalFrames(); n != 3 {
			return fmt.Errorf("peer got %d frames", n)
		}
		return nil
	})
	w.Close()
	if r := await(t, blocked); !errors.Is(r.err, sink.ErrClosed) || r.dones != 0 {
		t.Errorf("blocked Send: %v with %d dones, want ErrClosed and none", r.err, r.dones)
	}
	want := []string{"1:" + sink.ErrClosed.Error(), "2:" + sink.ErrClosed.Error(), "3:" + sink.ErrClosed.Error()}
	if got := dl.list(); !slices.Equal(got, want) {
		t.Errorf("done calls %v, want %v", got, want)
	}
	if err := w.Send(bg, msg(5, 1), func(error) { t.Error("done after Close") }); !errors.Is(err, sink.ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
}

// TestWriter_AckedSplit: a Send larger than the drainer's max_records goes
// out as several frames at message boundaries, with one done after all are
// acked; a message that alone exceeds the limit is refused.
func TestWriter_AckedSplit(t *testing.T) {
	path := socketPath(t)
	p := startAckPeer(t, path, &ackPeer{hold: true, own: wire.Welcome{MaxRecords: 5}})
	w, _ := ackedWriter(t, path, sink.Options{})
	waitConnected(t, w)
	var rs []record.Record
	for seq := range 5 {
		rs = append(rs, msg(uint64(seq+1), 2)...)
	}
	var dl doneLog
	if err := w.Send(bg, rs, dl.fn("all")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := p.totalFrames(); n != 3 {
			return fmt.Errorf("peer got %d frames, want 3 (2+2+1 messages of 2 records)", n)
		}
		return nil
	})
	p.ackAll()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := dl.n.Load(); n != 1 {
			return fmt.Errorf("%d dones", n)
		}
		return nil
	})
	if got := dl.list(); !slices.Equal(got, []string{"all:<nil>"}) {
		t.Errorf("done calls %v", got)
	}
	err := w.Send(bg, msg(9, 6), func(error) { t.Error("done for a refused Send") })
	if !errors.Is(err, sink.ErrMessageTooLarge) || !errors.Is(err, pipeline.ErrTooLarge) {
		t.Errorf("Send of a 6-record message with max_records 5: %v, want ErrMessageTooLarge wrapping pipeline.ErrTooLarge", err)
	}
}

// TestWriter_AckedFaultPoint: close at sink.ack.before drops the connection
// before the ACK settles anything; the frame is re-sent and acked on the
// next connection, and done is called once.
func TestWriter_AckedFaultPoint(t *testing.T) {
	pt, ok := fault.Lookup("sink.ack.before")
	if !ok {
		t.Fatal("fault point sink.ack.before is not registered")
	}
	path := socketPath(t)
	p := startAckPeer(t, path, &ackPeer{})
	w, reg := ackedWriter(t, path, sink.Options{})
	waitConnected(t, w)
	pt.Set(&fault.Action{Kind: fault.Close, Count: 1})
	t.Cleanup(func() { pt.Set(nil) })
	var dl doneLog
	if err := w.Send(bg, msg(1, 1), dl.fn("1")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := dl.n.Load(); n != 1 {
			return fmt.Errorf("%d dones", n)
		}
		return nil
	})
	if got := reconnects(t, reg, sink.ReasonPeerClosed); got != 1 {
		t.Errorf("reconnects{peer_closed} = %v, want 1", got)
	}
	if a, b := p.framesOn(0), p.framesOn(1); !slices.Equal(a, []uint64{1}) || !slices.Equal(b, []uint64{1}) {
		t.Errorf("frame 1 on the connections: %v then %v, want it on both", a, b)
	}
	if got := dl.list(); !slices.Equal(got, []string{"1:<nil>"}) {
		t.Errorf("done calls %v", got)
	}
}

// TestWriter_AckedGoodbye: a connection the sink ends on purpose gets a
// CLOSE before it is closed (docs/protocol.md, 4.5): NORMAL when a requested
// reconnect or MaxConnAge replaced it, once its last writer let go, and
// GOING_AWAY on Close. The drainer sees no error, the frames acked before
// stay settled once, and the replacement is counted under its own reason,
// not as a failure.
func TestWriter_AckedGoodbye(t *testing.T) {
	closesOf := func(p *ackPeer) []wire.CloseCode {
		p.mu.Lock()
		defer p.mu.Unlock()
		var codes []wire.CloseCode
		for _, c := range p.closes {
			codes = append(codes, c.Code)
		}
		return codes
	}
	waitCloses := func(t *testing.T, p *ackPeer, want ...wire.CloseCode) {
		t.Helper()
		testkit.WaitFor(t, 10*time.Second, func() error {
			if got := closesOf(p); !slices.Equal(got, want) {
				return fmt.Errorf("CLOSE codes from the sink %v, want %v", got, want)
			}
			return nil
		})
	}
	sendOne := func(t *testing.T, w *sink.Writer, seq uint64, dl *doneLog) {
		t.Helper()
		n := dl.n.Load()
		if err := w.Send(bg, msg(seq, 2), dl.fn(fmt.Sprint(seq))); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, 10*time.Second, func() error {
			if got := dl.n.Load(); got != n+1 {
				return fmt.Errorf("%d dones, want %d", got, n+1)
			}
			return nil
		})
	}
	noFailure := func(t *testing.T, p *ackPeer, reg *prometheus.Registry) {
		t.Helper()
		for _, r := range []string{sink.ReasonPeerClosed, sink.ReasonWriteError, sink.ReasonProtocolError, sink.ReasonAckTimeout} {
			if got := reconnects(t, reg, r); got != 0 {
				t.Errorf("reconnects{%s} = %v, want 0", r, got)
			}
		}
		if v := p.violations(); len(v) > 0 {
			t.Errorf("the drainer saw protocol violations: %v", v)
		}
	}

	t.Run("reconnect", func(t *testing.T) {
		path := socketPath(t)
		p := startAckPeer(t, path, &ackPeer{})
		w, reg := ackedWriter(t, path, sink.Options{})
		var dl doneLog
		sendOne(t, w, 1, &dl)
		// The connection is idle (everything acked) when it is replaced:
		// its flusher must still let go of it.
		w.Reconnect(sink.ReasonRequested)
		waitCloses(t, p, wire.CodeNormal)
		sendOne(t, w, 2, &dl)
		if got := reconnects(t, reg, sink.ReasonRequested); got != 1 {
			t.Errorf("reconnects{requested} = %v, want 1", got)
		}
		if a, b := p.framesOn(0), p.framesOn(1); !slices.Equal(a, []uint64{1}) || !slices.Equal(b, []uint64{2}) {
			t.Errorf("frames on the connections: %v then %v, want [1] then [2]", a, b)
		}
		noFailure(t, p, reg)
		w.Close()
		waitCloses(t, p, wire.CodeNormal, wire.CodeGoingAway)
		if got := dl.list(); !slices.Equal(got, []string{"1:<nil>", "2:<nil>"}) {
			t.Errorf("done calls %v", got)
		}
	})

	t.Run("max_age", func(t *testing.T) {
		path := socketPath(t)
		p := startAckPeer(t, path, &ackPeer{})
		w, reg := ackedWriter(t, path, sink.Options{MaxConnAge: 100 * time.Millisecond})
		var dl doneLog
		sendOne(t, w, 1, &dl)
		testkit.WaitFor(t, 10*time.Second, func() error {
			if got := closesOf(p); len(got) < 2 {
				return fmt.Errorf("CLOSE codes from the sink %v, want at least two replacements", got)
			}
			return nil
		})
		for i, c := range closesOf(p) {
			if c != wire.CodeNormal {
				t.Errorf("CLOSE %d from the sink: %v, want NORMAL", i, c)
			}
		}
		if got := reconnects(t, reg, sink.ReasonMaxAge); got < 2 {
			t.Errorf("reconnects{max_age} = %v, want at least 2", got)
		}
		noFailure(t, p, reg)
	})

	t.Run("close", func(t *testing.T) {
		path := socketPath(t)
		p := startAckPeer(t, path, &ackPeer{})
		w, reg := ackedWriter(t, path, sink.Options{})
		var dl doneLog
		sendOne(t, w, 1, &dl)
		noFailure(t, p, reg)
		start := time.Now()
		w.Close()
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Close took %v", d)
		}
		waitCloses(t, p, wire.CodeGoingAway)
		// The drainer's end of the connection is closed too.
		testkit.WaitFor(t, 10*time.Second, func() error {
			p.d.mu.Lock()
			defer p.d.mu.Unlock()
			if len(p.d.conns) != 1 {
				return fmt.Errorf("%d connections accepted", len(p.d.conns))
			}
			return nil
		})
		p.d.finish(t)
	})
}

// TestWriter_AckedStreamPositions: every HELLO carries the positions that
// Options.Positions reports at that moment; a STREAM_REWOUND refusal is
// retried every BackoffMax (not with the fast backoff of a streak) and
// logged once at ERROR with the remedy; a failing Positions fails the
// attempt, counted as POSITIONS, and is retried. Nothing is delivered
// until the drainer lets the sink in.
func TestWriter_AckedStreamPositions(t *testing.T) {
	path := socketPath(t)
	p := startAckPeer(t, path, &ackPeer{refuse: 4, refuseCode: wire.CodeStreamRewound}) // connection 0 sends no HELLO: Positions failed
	var calls atomic.Uint64
	positions := func(context.Context) ([]wire.StreamPosition, error) {
		n := calls.Add(1)
		if n == 1 {
			return nil, errors.New("queue unreachable")
		}
		return []wire.StreamPosition{{Stream: "T", Epoch: 9, LastSeq: 100 * n}}, nil
	}
	var lb logBuf
	const maxWait = 100 * time.Millisecond
	w, reg := ackedWriter(t, path, sink.Options{Logger: lb.logger(), Positions: positions, BackoffMin: time.Millisecond, BackoffMax: maxWait})
	var dl doneLog
	t0 := time.Now()
	if err := w.Send(bg, msg(1, 1), dl.fn("1")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := dl.n.Load(); n != 1 {
			return fmt.Errorf("%d dones", n)
		}
		return nil
	})
	if took := time.Since(t0); took < 3*maxWait {
		t.Errorf("three STREAM_REWOUND refusals were retried within %v; each retry must wait BackoffMax (%v)", took, maxWait)
	}
	if got := counter(t, reg, "sluice_sink_handshake_failures_total", "code", "STREAM_REWOUND"); got != 3 {
		t.Errorf("handshake_failures{STREAM_REWOUND} = %v, want 3", got)
	}
	if got := counter(t, reg, "sluice_sink_handshake_failures_total", "code", "POSITIONS"); got != 1 {
		t.Errorf("handshake_failures{POSITIONS} = %v, want 1", got)
	}
	p.mu.Lock()
	hellos := slices.Clone(p.hellos)
	p.mu.Unlock()
	if len(hellos) != 4 {
		t.Fatalf("%d HELLOs, want 4", len(hellos))
	}
	for i, h := range hellos {
		want := []wire.StreamPosition{{Stream: "T", Epoch: 9, LastSeq: 100 * uint64(i+2)}}
		if !slices.Equal(h.Positions, want) {
			t.Errorf("HELLO %d positions %+v, want %+v", i, h.Positions, want)
		}
	}
	s := lb.String()
	if n := strings.Count(s, "level=ERROR msg=\"the drainer refused this sink"); n != 1 {
		t.Errorf("%d ERROR lines for the refusals, want 1 (once a minute):\n%s", n, s)
	}
	if !strings.Contains(s, "--accept-rewind") {
		t.Errorf("the refusal's log does not say how to recover:\n%s", s)
	}
}
