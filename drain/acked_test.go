package drain_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/record"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/ledger"
	"github.com/sluice-dev/sluice/wire"
)

func startAcked(t testing.TB, opts drain.Options) *running {
	t.Helper()
	opts.Framing = wire.FramingAcked
	return start(t, opts)
}

// rawLines returns every line of every output file in dir, committed or not.
func rawLines(t testing.TB, dir string) []string {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	slices.Sort(names)
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		for l := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
			if l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}

func histCount(t testing.TB, reg *prometheus.Registry, name string) (count uint64, sum float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0, 0
}

func TestAcked_FramesAreWrittenAndAcked(t *testing.T) {
	for _, identity := range []bool{false, true} {
		t.Run(fmt.Sprintf("identity=%v", identity), func(t *testing.T) {
			r := startAcked(t, drain.Options{WriteIdentity: identity})
			a := dialAcked(t, r.Addr(), "t-1")
			f1 := msgs("S", 1, 3, 2)
			f2 := append(msg("S", 4, 1), msg("T", 9, 3)...)
			a.sendAcked(1, f1)
			a.sendAcked(5, f2) // ids may have gaps
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			got := readAll(t, r.out)
			var want []string
			for _, rec := range slices.Concat(f1, f2) {
				l := string(rec.Data)
				if identity {
					l = fmt.Sprintf("%s:%d:%d\t%s", rec.ID.Stream, rec.ID.Seq, rec.ID.Index, l)
				}
				want = append(want, l)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("output\n%q\nwant\n%q", got, want)
			}
			if st := r.Stats(); st.Frames != 2 || st.Records != uint64(len(want)) || st.Duplicates != 0 {
				t.Fatalf("stats %+v", st)
			}
			if n, _ := histCount(t, r.reg, "sluice_drain_fsync_seconds"); n != 2 {
				t.Fatalf("fsync histogram has %d samples, want 2 (one commit per frame sent and awaited)", n)
			}
		})
	}
}

// A frame is acknowledged only once it is durable: while the committer is
// held between the output fsync and the journal commit, the records are in
// the file but no ACK comes, and ledger.ReadCommitted does not show them yet.
func TestAcked_AckOnlyAfterCommit(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	t.Cleanup(drain.SetAfterWriteHook(func() {
		once.Do(func() {
			close(entered)
			<-release
		})
	}))
	r := startAcked(t, drain.Options{})
	a := dialAcked(t, r.Addr(), "t-1")
	recs := msgs("S", 1, 2, 1)
	if err := a.send(1, recs); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the committer never reached the point after the output write")
	}
	if got := rawLines(t, r.out); !slices.Equal(got, lines(recs)) {
		t.Fatalf("after write+fsync the files hold %q, want %q", got, lines(recs))
	}
	if got := readAll(t, r.out); len(got) != 0 {
		t.Fatalf("ReadCommitted shows %q before the commit", got)
	}
	if up, err := a.readAck(100 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("before the journal commit: ACK %d, err %v; want no ACK", up, err)
	}
	close(release)
	a = &ackedClient{t: t, nc: a.nc, rd: wire.NewReader(a.nc), st: a.st, w: a.w} // the timed-out Reader is spent
	a.waitAck(1)
	if got := readAll(t, r.out); !slices.Equal(got, lines(recs)) {
		t.Fatalf("ReadCommitted after the commit: %q", got)
	}
}

func TestAcked_DuplicatesAcrossReconnects(t *testing.T) {
	r := startAcked(t, drain.Options{})
	a := dialAcked(t, r.Addr(), "t-1")
	f1, f2 := msgs("S", 1, 3, 2), msgs("S", 4, 5, 2)
	a.sendAcked(1, f1)
	a.nc.Close()
	// A new connection re-sends frame 1 (same identities, new producer
	// instance numbering) and a frame mixing old and new messages.
	b := dialAcked(t, r.Addr(), "t-2")
	b.sendAcked(1, f1)
	b.sendAcked(2, slices.Concat(msg("S", 3, 2), f2))
	// Two connections race the same new message: written once.
	c1, c2 := dialAcked(t, r.Addr(), "t-3"), dialAcked(t, r.Addr(), "t-4")
	f3 := msg("T", 7, 3)
	if err := c1.send(1, f3); err != nil {
		t.Fatal(err)
	}
	if err := c2.send(1, f3); err != nil {
		t.Fatal(err)
	}
	c1.waitAck(1)
	c2.waitAck(1)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := readAll(t, r.out), lines(f1, f2, f3); !slices.Equal(got, want) {
		t.Fatalf("output\n%q\nwant\n%q", got, want)
	}
	if got, want := testutil.ToFloat64(counterVec(t, r.reg, "sluice_drain_duplicates_total")), float64(len(f1)+2+len(f3)); got != want {
		t.Fatalf("sluice_drain_duplicates_total = %v, want %v", got, want)
	}
}

// counterVec returns a collector for a plain metric of reg, for testutil.
func counterVec(t testing.TB, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	return gathered{reg, name}
}

type gathered struct {
	reg  *prometheus.Registry
	name string
}

func (g gathered) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(g, ch) }
func (g gathered) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := g.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == g.name {
			ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(g.name, "", nil, nil), prometheus.UntypedValue, mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
}

func TestAcked_RestartKeepsDedup(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	r1 := startAcked(t, drain.Options{Out: dir})
	f1 := msgs("S", 1, 4, 2)
	dialAcked(t, r1.Addr(), "t-1").sendAcked(1, f1)
	if err := r1.stop(); err != nil {
		t.Fatal(err)
	}
	r2 := startAcked(t, drain.Options{Out: dir})
	a := dialAcked(t, r2.Addr(), "t-2")
	f2 := msgs("S", 5, 6, 2)
	a.sendAcked(1, f1)
	a.sendAcked(2, slices.Concat(msg("S", 4, 2), f2))
	if err := r2.stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := readAll(t, dir), lines(f1, f2); !slices.Equal(got, want) {
		t.Fatalf("output\n%q\nwant\n%q", got, want)
	}
	if got := r2.Stats().Duplicates; got != uint64(len(f1)+2) {
		t.Fatalf("second run dropped %d duplicates, want %d", got, len(f1)+2)
	}
}

// A crash between the output write and the journal commit leaves records in
// the output that were never acknowledged. After a restart they are cut
// away, the producer re-sends them, and the output holds every record
// exactly once: no duplicate, no hole. A torn record at the journal's end
// (a commit cut short) is dropped too.
func TestAcked_CrashBetweenWriteAndCommit(t *testing.T) {
	for _, torn := range []bool{false, true} {
		t.Run(fmt.Sprintf("torn_journal=%v", torn), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			r1 := startAcked(t, drain.Options{Out: dir, RotateBytes: 200})
			a := dialAcked(t, r1.Addr(), "t-1")
			f1, f2 := msgs("S", 1, 3, 2), msgs("S", 4, 9, 2) // f2 spans several files
			a.sendAcked(1, f1)
			restore := setFault(t, "drain.commit.after_write", &fault.Action{Kind: fault.Error, Count: 1})
			defer restore()
			if err := a.send(2, f2); err != nil {
				t.Fatal(err)
			}
			if _, err := a.readAck(30 * time.Second); !isPeerClose(err, wire.CodeInternal) {
				t.Fatalf("after the injected crash: %v, want CLOSE INTERNAL", err)
			}
			if err := r1.stop(); !errors.Is(err, fault.ErrInjected) {
				t.Fatalf("Serve = %v, want the injected failure", err)
			}
			restore()
			if got := rawLines(t, dir); !slices.Equal(got, lines(f1, f2)) {
				t.Fatalf("test setup: the files should hold the uncommitted frame too: %q", got)
			}
			if got := readAll(t, dir); !slices.Equal(got, lines(f1)) {
				t.Fatalf("ReadCommitted before restart shows uncommitted records: %q", got)
			}
			if torn {
				j, err := os.OpenFile(filepath.Join(dir, ledger.JournalName), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				j.Write([]byte{0, 0, 0, 40, 1, 2, 3, 4, 'C', 0}) // a record cut short
				j.Close()
			}

			r2 := startAcked(t, drain.Options{Out: dir, RotateBytes: 200})
			if got := rawLines(t, dir); !slices.Equal(got, lines(f1)) {
				t.Fatalf("after restart the files hold %q, want only the committed %q", got, lines(f1))
			}
			b := dialAcked(t, r2.Addr(), "t-2")
			b.sendAcked(1, f1) // everything unacknowledged, and more
			b.sendAcked(2, f2)
			if err := r2.stop(); err != nil {
				t.Fatal(err)
			}
			if got, want := readAll(t, dir), lines(f1, f2); !slices.Equal(got, want) {
				t.Fatalf("output\n%q\nwant\n%q", got, want)
			}
			if got, want := rawLines(t, dir), lines(f1, f2); !slices.Equal(got, want) {
				t.Fatalf("files\n%q\nwant\n%q", got, want)
			}
		})
	}
}

func TestAcked_GroupCommit(t *testing.T) {
	const conns, perConn = 4, 40
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	t.Cleanup(drain.SetAfterWriteHook(func() {
		once.Do(func() {
			close(entered)
			<-release
		})
	}))
	received := countHook(t, drain.SetReceivedHook)
	r := startAcked(t, drain.Options{})
	cs := make([]*ackedClient, conns)
	for i := range cs {
		cs[i] = dialAcked(t, r.Addr(), fmt.Sprintf("t-%d", i))
	}
	// The first frame holds the committer, so that the others pile up.
	cs[0].send(1, msg("C0", 1, 1))
	<-entered
	for i, c := range cs {
		for k := range perConn {
			if i == 0 && k == 0 {
				continue
			}
			if err := c.send(uint64(k+1), msg(fmt.Sprintf("C%d", i), uint64(k+1), 3)); err != nil {
				t.Fatal(err)
			}
		}
	}
	testkit.WaitFor(t, 30*time.Second, func() error {
		if got := received.Load(); got != conns*perConn {
			return fmt.Errorf("%d frames received", got)
		}
		return nil
	})
	close(release)
	for _, c := range cs {
		c.waitAck(perConn)
	}
	commits, frames := histCount(t, r.reg, "sluice_drain_commit_frames")
	if frames != conns*perConn {
		t.Fatalf("commit histogram counts %v frames, want %d", frames, conns*perConn)
	}
	if fsyncs, _ := histCount(t, r.reg, "sluice_drain_fsync_seconds"); fsyncs != commits || commits > 3 {
		t.Fatalf("%d commits (%d fsync pairs) for %v frames: no group commit", commits, fsyncs, frames)
	}
}

// Each kind of bad input closes its own connection, with the CLOSE code of
// docs/protocol.md and a counted reason, while another connection keeps
// working.
func TestAcked_BadInputClosesOnlyThatConnection(t *testing.T) {
	hello, _ := wire.AppendHello(nil, wire.Hello{MinVersion: wire.Version, MaxVersion: wire.Version, Instance: "bad"})
	data, _ := wire.AppendData(nil, 1, msg("BAD", 1, 1), wire.Limits{})
	badCRC := bytes.Clone(data)
	badCRC[len(badCRC)-1] ^= 1
	oversize := []byte{0x7f, 0, 0, 0, 0, 0, 0, 0, 3, 0}
	for _, tc := range []struct {
		name   string
		input  []byte
		code   wire.CloseCode
		reason string
		why    string // the CLOSE reason, when checked
	}{
		{"http instead of HELLO", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wire.CodeFrameTooLarge, drain.ReasonProtocol, ""},
		{"DATA before HELLO", data, wire.CodeHandshakeRequired, drain.ReasonProtocol, ""},
		{"corrupted HELLO", bytes.Replace(hello, []byte("SLUICE"), []byte("SLOICE"), 1), wire.CodeBadChecksum, drain.ReasonProtocol, ""},
		{"bad CRC", slices.Concat(hello, badCRC), wire.CodeBadChecksum, drain.ReasonProtocol, ""},
		{"oversized frame", slices.Concat(hello, oversize), wire.CodeFrameTooLarge, drain.ReasonProtocol, ""},
		{"second HELLO", slices.Concat(hello, hello), wire.CodeUnexpectedFrame, drain.ReasonProtocol, ""},
		{"slow loris", slices.Concat(hello, data[:7]), wire.CodeTimeout, drain.ReasonSlowPeer, "no complete frame within 300ms"},
		{"silent peer", nil, wire.CodeTimeout, drain.ReasonSlowPeer, "no HELLO within 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startAcked(t, drain.Options{FrameTimeout: 300 * time.Millisecond})
			good := dialAcked(t, r.Addr(), "good")
			good.sendAcked(1, msg("G", 1, 1))
			bad := dial(t, r.Addr())
			if _, err := bad.Write(tc.input); err != nil {
				t.Fatal(err)
			}
			if cl := readClose(t, bad); cl.Code != tc.code || tc.why != "" && cl.Reason != tc.why {
				t.Fatalf("CLOSE %v (%q), want %v (%q)", cl.Code, cl.Reason, tc.code, tc.why)
			}
			waitClosed(t, bad)
			good.sendAcked(2, msg("G", 2, 1))
			if got := counter(t, r.reg, "sluice_drain_conn_errors_total", tc.reason); got != 1 {
				t.Fatalf("conn errors{%s} = %v, want 1", tc.reason, got)
			}
			if tc.reason == drain.ReasonProtocol {
				if got := counter(t, r.reg, "sluice_drain_protocol_errors_total", tc.code.String()); got != 1 {
					t.Fatalf("protocol errors{%v} = %v, want 1", tc.code, got)
				}
			}
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, r.out); !slices.Equal(got, lines(msg("G", 1, 1), msg("G", 2, 1))) {
				t.Fatalf("output %q", got)
			}
		})
	}
}

// A peer that sends but never reads its ACKs is closed once an ACK write
// stalls for AckWriteTimeout; another connection keeps working.
func TestAcked_PeerThatNeverReadsAcks(t *testing.T) {
	var out testkit.SyncBuffer
	received, acks := countHook(t, drain.SetReceivedHook), countHook(t, drain.SetAckHook)
	r := startAcked(t, drain.Options{Out: "-", Stdout: &out, AckWriteTimeout: 200 * time.Millisecond})
	good := dialAcked(t, r.Addr(), "good")
	deaf := dialAcked(t, r.Addr(), "deaf")
	const maxFrames = 200000
	id := uint64(0)
	timedOut := func() bool {
		return counter(t, r.reg, "sluice_drain_conn_errors_total", drain.ReasonAckTimeout) == 1
	}
	// Send until the drainer gives up on the ACK write: the deaf peer's
	// receive buffer fills with ACKs, the acker blocks, AckWriteTimeout
	// fires. The deaf peer reads no ACKs, so it cannot track the window
	// itself: it keeps at most 16 frames unacknowledged by the drainer's
	// own count, and when the acker is merely slow (a loaded machine) it
	// waits for it to catch up rather than assuming it is stuck.
	for ; id < maxFrames && !timedOut(); id++ {
		testkit.WaitFor(t, 30*time.Second, func() error {
			if n := received.Load() - acks.Load(); n > 16 && !timedOut() {
				return fmt.Errorf("%d frames unacknowledged", n)
			}
			return nil
		})
		if timedOut() {
			break
		}
		if err := deaf.sendUnchecked(id+1, msg("D", id+1, 1)); err != nil {
			break // the drainer dropped the connection
		}
		testkit.WaitFor(t, 30*time.Second, func() error {
			if st := r.Stats(); st.Frames < id+1 && !timedOut() {
				return fmt.Errorf("%d frames committed", st.Frames)
			}
			return nil
		})
	}
	if id == maxFrames {
		t.Fatalf("the ACKs of %d frames never filled the socket buffer", id)
	}
	testkit.WaitFor(t, 30*time.Second, func() error {
		if got := counter(t, r.reg, "sluice_drain_conn_errors_total", drain.ReasonAckTimeout); got != 1 {
			return fmt.Errorf("ack write timeouts %v", got)
		}
		return nil
	})
	good.sendAcked(1, msg("G", 1, 1))
	deaf.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, deaf.nc); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Logf("deaf connection ended with %v", err)
	}
	if got := counter(t, r.reg, "sluice_drain_conn_errors_total", drain.ReasonProtocol); got != 0 {
		t.Fatalf("protocol errors %v: the deaf peer overran the window", got)
	}
}

func TestAcked_PeerCredentials(t *testing.T) {
	me, myGroup := uint32(os.Getuid()), uint32(os.Getgid())
	t.Run("refused", func(t *testing.T) {
		r := startAcked(t, drain.Options{PeerUIDs: []uint32{me + 1}, PeerGIDs: []uint32{myGroup + 1}})
		c := dial(t, r.Addr())
		hello, _ := wire.AppendHello(nil, wire.Hello{MinVersion: wire.Version, MaxVersion: wire.Version, Instance: "x"})
		c.Write(hello)
		if cl := readClose(t, c); cl.Code != wire.CodeUnauthorized || !strings.Contains(cl.Reason, fmt.Sprint(me)) {
			t.Fatalf("CLOSE %v %q, want UNAUTHORIZED naming uid %d", cl.Code, cl.Reason, me)
		}
		if got := counter(t, r.reg, "sluice_drain_refused_peers_total"); got != 1 {
			t.Fatalf("refused peers %v, want 1", got)
		}
		if got := counter(t, r.reg, "sluice_drain_conn_errors_total", drain.ReasonPeerUID); got != 1 {
			t.Fatalf("conn errors{peer_uid} %v, want 1", got)
		}
	})
	t.Run("allowed by gid", func(t *testing.T) {
		r := startAcked(t, drain.Options{PeerUIDs: []uint32{me + 1}, PeerGIDs: []uint32{myGroup}})
		dialAcked(t, r.Addr(), "x").sendAcked(1, msg("S", 1, 1))
		if st := r.Stats(); st.Refused != 0 {
			t.Fatalf("%+v", st)
		}
	})
}

// With a dedup bound of two ranges per stream, the lowest range is
// forgotten: a redelivery of its message is written again (a duplicate,
// never a loss), while the ranges kept still drop theirs. Replay after a
// restart rebuilds the same bounded state.
func TestAcked_DedupBound(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	opts := drain.Options{Out: dir, DedupSpans: 2}
	r1 := startAcked(t, opts)
	a := dialAcked(t, r1.Addr(), "t-1")
	for i, seq := range []uint64{10, 20, 30} { // three separate ranges
		a.sendAcked(uint64(i+1), msg("S", seq, 1))
	}
	if got := counter(t, r1.reg, "sluice_drain_dedup_evicted_total"); got != 1 {
		t.Fatalf("evicted %v, want 1", got)
	}
	if got := counter(t, r1.reg, "sluice_drain_dedup_entries"); got != 3 { // the stream + 2 ranges
		t.Fatalf("dedup entries %v, want 3", got)
	}
	a.sendAcked(4, msg("S", 30, 1)) // kept: dropped
	a.sendAcked(5, msg("S", 20, 1)) // kept: dropped
	if err := r1.stop(); err != nil {
		t.Fatal(err)
	}
	r2 := startAcked(t, opts)
	if got := counter(t, r2.reg, "sluice_drain_dedup_entries"); got != 3 {
		t.Fatalf("after restart: dedup entries %v, want 3", got)
	}
	b := dialAcked(t, r2.Addr(), "t-2")
	b.sendAcked(1, msg("S", 30, 1)) // still known: dropped
	b.sendAcked(2, msg("S", 10, 1)) // forgotten: written again
	if err := r2.stop(); err != nil {
		t.Fatal(err)
	}
	want := lines(msg("S", 10, 1), msg("S", 20, 1), msg("S", 30, 1), msg("S", 10, 1))
	if got := readAll(t, dir); !slices.Equal(got, want) {
		t.Fatalf("output %q, want %q", got, want)
	}
}

// A journal past JournalBytes is compacted into a snapshot, and a restart
// from the compacted journal still knows every committed message.
func TestAcked_JournalCompaction(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	opts := drain.Options{Out: dir, JournalBytes: 512}
	r1 := startAcked(t, opts)
	a := dialAcked(t, r1.Addr(), "t-1")
	const n = 60
	for i := range uint64(n) {
		// Odd sequences first, so that ranges stay open until the evens.
		seq := 2*i + 1
		if i >= n/2 {
			seq = 2 * (i - n/2 + 1)
		}
		a.sendAcked(i+1, msg("S", seq, 1))
	}
	if err := r1.stop(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, ledger.JournalName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 2048 {
		t.Fatalf("journal is %d bytes after %d commits with JournalBytes 512: not compacted", fi.Size(), n)
	}
	r2 := startAcked(t, opts)
	b := dialAcked(t, r2.Addr(), "t-2")
	b.sendAcked(1, msgs("S", 1, n, 1))
	b.sendAcked(2, msg("S", n+1, 1))
	if err := r2.stop(); err != nil {
		t.Fatal(err)
	}
	if got := r2.Stats(); got.Duplicates != n || got.Records != 1 {
		t.Fatalf("after restart: %d duplicates, %d written; want %d and 1", got.Duplicates, got.Records, n)
	}
	if got := len(readAll(t, dir)); got != n+1 {
		t.Fatalf("%d lines, want %d", got, n+1)
	}
}

// Stdout output acknowledges and deduplicates in memory.
func TestAcked_Stdout(t *testing.T) {
	var out testkit.SyncBuffer
	r := startAcked(t, drain.Options{Out: "-", Stdout: &out})
	a := dialAcked(t, r.Addr(), "t-1")
	a.sendAcked(1, msg("S", 1, 2))
	a.sendAcked(2, slices.Concat(msg("S", 1, 2), []record.Record{{ID: record.ID{Stream: "S", Seq: 2}, Data: []byte("{\n\"multi\": \"line\"\r\n}")}}))
	want := `{"s":"S","seq":1,"i":0}` + "\n" + `{"s":"S","seq":1,"i":1}` + "\n" + "{ \"multi\": \"line\"  }\n"
	if got := out.String(); got != want {
		t.Fatalf("stdout %q, want %q", got, want)
	}
}

// At shutdown, frames already received are committed and acknowledged, then
// the drainer says GOING_AWAY.
func TestAcked_ShutdownAcksInFlight(t *testing.T) {
	received := countHook(t, drain.SetReceivedHook)
	r := startAcked(t, drain.Options{})
	a := dialAcked(t, r.Addr(), "t-1")
	for id := uint64(1); id <= 10; id++ {
		if err := a.send(id, msg("S", id, 5)); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 30*time.Second, func() error {
		if received.Load() != 10 {
			return errors.New("frames not received yet")
		}
		return nil
	})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if cl := a.readClose(); cl.Code != wire.CodeGoingAway {
		t.Fatalf("CLOSE %v, want GOING_AWAY", cl.Code)
	}
	if st := r.Stats(); st.Frames != 10 {
		t.Fatalf("%+v", st)
	}
	if got := len(readAll(t, r.out)); got != 50 {
		t.Fatalf("%d records, want 50", got)
	}
}

func TestAcked_SecondDrainerOnSameOutput(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	startAcked(t, drain.Options{Out: dir})
	srv, err := drain.New(drain.Options{Framing: wire.FramingAcked, Socket: filepath.Join(testkit.ShortDir(t), "d.sock"), Out: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); !errors.Is(err, drain.ErrOutputInUse) {
		t.Fatalf("Listen = %v, want ErrOutputInUse", err)
	}
	srv.Close()
}

// Options.MaxFrameBytes (drain.max_frame_bytes) is what WELCOME grants, and
// the default is wire.DefaultMaxFrameBytes; a value the protocol cannot
// carry is refused by New.
func TestAcked_MaxFrameBytesGranted(t *testing.T) {
	for _, tc := range []struct{ set, want int }{{0, wire.DefaultMaxFrameBytes}, {64 << 10, 64 << 10}} {
		r := startAcked(t, drain.Options{MaxFrameBytes: tc.set})
		a := dialAcked(t, r.Addr(), "t-1")
		if got := int(a.w.MaxFrameBytes); got != tc.want {
			t.Errorf("MaxFrameBytes %d: WELCOME grants %d, want %d", tc.set, got, tc.want)
		}
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
	}
	_, err := drain.New(drain.Options{Socket: "x.sock", Out: t.TempDir(), Framing: wire.FramingAcked, MaxFrameBytes: 100})
	if err == nil || !strings.Contains(err.Error(), "max frame bytes is 100") {
		t.Errorf("New with MaxFrameBytes 100 = %v, want a refusal that names it", err)
	}
}

// Records are written straight from the frames the drainer read (detached
// from the reader, written with writev): frames in flight together keep
// their own records, a commit of more lines than one writev takes is
// written whole and in order, files are cut at line boundaries, a newline
// or carriage return inside a record becomes a space, and a duplicate
// message in the batch is skipped.
func TestAcked_WritesFromTheFrames(t *testing.T) {
	const rotate = 4096
	dir := t.TempDir()
	r := startAcked(t, drain.Options{Out: dir, RotateBytes: rotate})
	a := dialAcked(t, r.Addr(), "t-1")
	big := msg("S", 1, 1500) // 3000 buffers: more than one writev
	odd := []record.Record{
		{ID: record.ID{Stream: "S", Seq: 2}, Data: []byte("{\"a\":\n1}")},
		{ID: record.ID{Stream: "S", Seq: 2, Index: 1}, Data: []byte("{\"b\":2}\r")},
	}
	frames := [][]record.Record{big, odd, msgs("S", 3, 40, 3), append(msg("S", 2, 2), msg("S", 41, 1)...)}
	for i, f := range frames {
		if err := a.send(uint64(i+1), f); err != nil { // no wait: the frames are in flight together
			t.Fatal(err)
		}
	}
	a.waitAck(uint64(len(frames)))
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	want := lines(big)
	want = append(want, `{"a": 1}`, `{"b":2} `)
	want = append(want, lines(msgs("S", 3, 40, 3), msg("S", 41, 1))...)
	got := readAll(t, dir)
	if !slices.Equal(got, want) {
		t.Fatalf("output has %d lines, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".jsonl") {
			continue
		}
		files++
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > rotate || len(b) == 0 || b[len(b)-1] != '\n' {
			t.Errorf("%s: %d bytes (rotation at %d), ends with %q: want whole lines within the limit", e.Name(), len(b), rotate, b[max(0, len(b)-1):])
		}
	}
	if files < 2 {
		t.Errorf("%d output files, want the output cut into several at %d bytes", files, rotate)
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
