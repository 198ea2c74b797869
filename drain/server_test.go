package drain_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"

	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/fault"
)

// writeChunked writes data to c in pieces of random size, so lines are split
// across writes (and reads) at arbitrary points.
func writeChunked(c net.Conn, data []byte, rng *rand.Rand) error {
	for len(data) > 0 {
		n := min(len(data), 1+rng.IntN(8<<10))
		if _, err := c.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

func TestServer_ConcurrentWriters(t *testing.T) {
	const writers, perWriter = 8, 2000
	r := start(t, drain.Options{})
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("unix", r.Addr())
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			var b bytes.Buffer
			for n := range perWriter {
				fmt.Fprintf(&b, "{\"w\":%d,\"n\":%d}\n", w, n)
			}
			errc <- writeChunked(c, b.Bytes(), rand.New(rand.NewPCG(uint64(w), 1)))
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 30*time.Second, func() error {
		if st := r.Stats(); st.Records != writers*perWriter || st.Open != 0 {
			return fmt.Errorf("%d records drained and %d connections open; want %d and 0", st.Records, st.Open, writers*perWriter)
		}
		return nil
	})
	if err := r.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}

	next := make([]int, writers) // per writer, the n expected next: order within a connection is kept
	for i, line := range readAll(t, r.out) {
		var rec struct{ W, N *int }
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.W == nil || rec.N == nil || *rec.W < 0 || *rec.W >= writers {
			t.Fatalf("output line %d is torn or interleaved: %q", i, line)
		}
		if *rec.N != next[*rec.W] {
			t.Fatalf("writer %d: got record %d, want %d (lost, duplicated or reordered)", *rec.W, *rec.N, next[*rec.W])
		}
		next[*rec.W]++
	}
	for w, n := range next {
		if n != perWriter {
			t.Errorf("writer %d: %d records in the output, want %d", w, n, perWriter)
		}
	}
	if got := counter(t, r.reg, "sluice_drain_records_total"); got != writers*perWriter {
		t.Errorf("sluice_drain_records_total = %v, want %d", got, writers*perWriter)
	}
	if got := counter(t, r.reg, "sluice_drain_connections_total"); got != writers {
		t.Errorf("sluice_drain_connections_total = %v, want %d", got, writers)
	}
	if got := counter(t, r.reg, "sluice_drain_connections"); got != 0 {
		t.Errorf("sluice_drain_connections = %v, want 0", got)
	}
	if got := counter(t, r.reg, "sluice_drain_torn_lines_total"); got != 0 {
		t.Errorf("sluice_drain_torn_lines_total = %v, want 0", got)
	}
}

func TestServer_TornLineDiscarded(t *testing.T) {
	r := start(t, drain.Options{})
	c := dial(t, r.Addr())
	if _, err := io.WriteString(c, "{\"a\":1}\n{\"a\":2}\n{\"a\":3,\"cut\":"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if st := r.Stats(); st.TornLines != 1 || st.Open != 0 {
			return fmt.Errorf("torn lines %d, open %d; want 1 and 0", st.TornLines, st.Open)
		}
		return nil
	})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(readAll(t, r.out), "|"), `{"a":1}|{"a":2}`; got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
	if got := counter(t, r.reg, "sluice_drain_torn_lines_total"); got != 1 {
		t.Fatalf("sluice_drain_torn_lines_total = %v, want 1", got)
	}
	if got := r.Stats().Records; got != 2 {
		t.Fatalf("records = %d, want 2", got)
	}
}

func TestServer_OversizedLineClosesOnlyThatConnection(t *testing.T) {
	r := start(t, drain.Options{MaxLine: 1000})
	bad, good := dial(t, r.Addr()), dial(t, r.Addr())
	if _, err := io.WriteString(good, "{\"c\":\"good\",\"n\":0}\n"); err != nil {
		t.Fatal(err)
	}
	// A line of exactly MaxLine bytes is accepted; the next one is one byte
	// too long.
	okLine := `{"c":"bad","pad":"` + strings.Repeat("x", 1000-len(`{"c":"bad","pad":""}`)) + `"}`
	if len(okLine) != 1000 {
		t.Fatalf("test bug: line is %d bytes", len(okLine))
	}
	if _, err := io.WriteString(bad, okLine+"\n"+strings.Repeat("y", 1001)+"\n"); err != nil {
		t.Fatal(err)
	}
	// The drainer closes bad: reading it ends.
	waitClosed(t, bad)
	if _, err := io.WriteString(good, "{\"c\":\"good\",\"n\":1}\n"); err != nil {
		t.Fatalf("the other connection stopped working: %v", err)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if st := r.Stats(); st.Records != 3 {
			return fmt.Errorf("%d records, want 3", st.Records)
		}
		return nil
	})
	if got := counter(t, r.reg, "sluice_drain_conn_errors_total", drain.ReasonLineTooLong); got != 1 {
		t.Fatalf("sluice_drain_conn_errors_total{reason=%q} = %v, want 1", drain.ReasonLineTooLong, got)
	}
	good.Close()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, r.out)
	want := map[string]bool{`{"c":"good","n":0}`: true, okLine: true, `{"c":"good","n":1}`: true}
	if len(got) != 3 {
		t.Fatalf("output has %d lines, want 3", len(got))
	}
	for _, l := range got {
		if !want[l] {
			t.Fatalf("unexpected output line %.60q", l)
		}
	}
}

func TestServer_LongLinesGrowTheBuffer(t *testing.T) {
	r := start(t, drain.Options{}) // MaxLine 1 MiB, initial buffer smaller
	c := dial(t, r.Addr())
	long := `{"pad":"` + strings.Repeat("z", 900<<10) + `"}`
	if _, err := io.WriteString(c, "{}\n"+long+"\n{}\n"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if st := r.Stats(); st.Records != 3 || st.Open != 0 {
			return fmt.Errorf("%d records, %d open; want 3, 0", st.Records, st.Open)
		}
		return nil
	})
	r.stop()
	got := readAll(t, r.out)
	if len(got) != 3 || got[0] != "{}" || got[1] != long || got[2] != "{}" {
		t.Fatalf("output has %d lines, not the 3 sent", len(got))
	}
}

func TestServer_Rotation(t *testing.T) {
	const rotate, lines = 4096, 3000
	dir := filepath.Join(t.TempDir(), "new", "out")
	r := start(t, drain.Options{Out: dir, RotateBytes: rotate})
	c := dial(t, r.Addr())
	var b bytes.Buffer
	for n := range lines {
		fmt.Fprintf(&b, "{\"n\":%d,\"pad\":\"%s\"}\n", n, strings.Repeat("p", n%97))
	}
	if err := writeChunked(c, b.Bytes(), rand.New(rand.NewPCG(7, 7))); err != nil {
		t.Fatal(err)
	}
	c.Close()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if st := r.Stats(); st.Records != lines || st.Open != 0 {
			return fmt.Errorf("%d records, %d open", st.Records, st.Open)
		}
		return nil
	})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if min := b.Len() / rotate; len(entries) < min {
		t.Fatalf("%d files for %d bytes with RotateBytes %d, want at least %d", len(entries), b.Len(), rotate, min)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > rotate {
			t.Errorf("%s is %d bytes, past RotateBytes %d", e.Name(), fi.Size(), rotate)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
		if !strings.HasPrefix(e.Name(), "sluice-") || !strings.HasSuffix(e.Name(), ".jsonl") {
			t.Errorf("unexpected file name %s", e.Name())
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created output dir: mode %v, err %v; want 0700", fi.Mode().Perm(), err)
	}
	// Every file ends at a line boundary and ReadCommitted returns the lines in
	// the order sent.
	if got := strings.Join(readAll(t, dir), "\n") + "\n"; got != b.String() {
		t.Fatal("ReadCommitted did not return exactly the lines sent, in order")
	}
	// Every file but the last was rotated; the last one too if it filled up.
	if got, n := counter(t, r.reg, "sluice_drain_files_rotated_total"), float64(len(entries)); got < n-1 || got > n {
		t.Fatalf("sluice_drain_files_rotated_total = %v, files %v", got, n)
	}
}

// A restarted drainer keeps name order = write order, even when the clock
// reads earlier than the previous run's files.
func TestServer_FileNamesKeepOrderAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	future := "sluice-29991231T235959.999Z-000041.jsonl"
	if err := os.WriteFile(filepath.Join(dir, future), []byte("{\"run\":1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, drain.Options{Out: dir})
	c := dial(t, r.Addr())
	io.WriteString(c, "{\"run\":2}\n")
	c.Close()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if r.Stats().Records != 1 {
			return errors.New("record not drained yet")
		}
		return nil
	})
	r.stop()
	if got := strings.Join(readAll(t, dir), ","); got != `{"run":1},{"run":2}` {
		t.Fatalf("ReadCommitted order %q: the new file sorts before the old one", got)
	}
}

func TestServer_ShutdownDeliversDataInFlight(t *testing.T) {
	const lines = 5000
	r := start(t, drain.Options{})
	c := dial(t, r.Addr())
	var b bytes.Buffer
	for n := range lines {
		fmt.Fprintf(&b, "{\"n\":%d}\n", n)
	}
	testkit.WaitFor(t, 10*time.Second, func() error { // accepted, so Close must drain it
		if r.Stats().Open != 1 {
			return errors.New("connection not accepted yet")
		}
		return nil
	})
	// Slow the drainer down so the data is still in the socket when the
	// shutdown starts.
	restore := setFault(t, "drain.write.before", &fault.Action{Kind: fault.Delay, Min: 20 * time.Millisecond, Count: 5})
	defer restore()
	if _, err := c.Write(b.Bytes()); err != nil { // the kernel has it all: it is in flight
		t.Fatal(err)
	}
	sock := r.Addr()
	if err := r.Close(); err != nil { // the connection stays open and idle
		t.Fatal(err)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Serve after Close: %v", err)
	}
	if got := len(readAll(t, r.out)); got != lines {
		t.Fatalf("%d of %d lines written before Close are in the output", got, lines)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file still there after shutdown: %v", err)
	}
	if st := r.Stats(); st.Open != 0 || st.TornLines != 0 {
		t.Fatalf("after shutdown: %+v", st)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestServer_ServeReturnsOnContextCancel(t *testing.T) {
	r := start(t, drain.Options{})
	c := dial(t, r.Addr())
	io.WriteString(c, "{}\n")
	testkit.WaitFor(t, 10*time.Second, func() error {
		if r.Stats().Records != 1 {
			return errors.New("not drained yet")
		}
		return nil
	})
	if err := r.stop(); err != nil {
		t.Fatalf("Serve = %v, want nil after cancel", err)
	}
	if _, err := os.Lstat(r.Addr()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file still there: %v", err)
	}
	// The connection was closed by the drainer.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after shutdown: %v, want EOF", err)
	}
	if err := r.Serve(t.Context()); !errors.Is(err, drain.ErrClosed) {
		t.Fatalf("Serve after shutdown = %v, want ErrClosed", err)
	}
	if err := r.Listen(); !errors.Is(err, drain.ErrClosed) {
		t.Fatalf("Listen after shutdown = %v, want ErrClosed", err)
	}
}

func TestServer_Stdout(t *testing.T) {
	var out testkit.SyncBuffer
	r := start(t, drain.Options{Out: "-", Stdout: &out})
	c := dial(t, r.Addr())
	io.WriteString(c, "{\"x\":1}\n{\"x\":2}\n")
	// No Close: a quiet connection's lines must reach stdout anyway.
	testkit.WaitFor(t, 10*time.Second, func() error {
		if got := out.String(); got != "{\"x\":1}\n{\"x\":2}\n" {
			return fmt.Errorf("stdout %q", got)
		}
		return nil
	})
	c.Close()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// Lines written to a file are flushed without Close while the connection
// stays open.
func TestServer_FlushesIdleConnection(t *testing.T) {
	r := start(t, drain.Options{})
	c := dial(t, r.Addr())
	io.WriteString(c, "{\"idle\":true}\n")
	testkit.WaitFor(t, 10*time.Second, func() error {
		if _, err := os.Stat(r.out); err != nil {
			return err
		}
		if got := readAll(t, r.out); len(got) != 1 {
			return fmt.Errorf("%d lines on disk, want 1", len(got))
		}
		return nil
	})
}

func TestServer_OutputFailureStopsServe(t *testing.T) {
	r := start(t, drain.Options{Out: "-", Stdout: failWriter{}})
	c := dial(t, r.Addr())
	io.WriteString(c, "{}\n")
	select {
	case err := <-r.served:
		if !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("Serve = %v, want the output's error", err)
		}
		r.served <- err // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after the output failed")
	}
	if got := counter(t, r.reg, "sluice_drain_conn_errors_total", drain.ReasonOutput); got < 1 {
		t.Fatalf("sluice_drain_conn_errors_total{reason=output} = %v, want >= 1", got)
	}
}

func TestServer_InjectedErrorClosesConnection(t *testing.T) {
	r := start(t, drain.Options{})
	restore := setFault(t, "drain.write.before", &fault.Action{Kind: fault.Error, Count: 1})
	defer restore()
	c := dial(t, r.Addr())
	io.WriteString(c, "{\"dropped\":1}\n")
	waitClosed(t, c)
	c2 := dial(t, r.Addr())
	io.WriteString(c2, "{\"kept\":1}\n")
	c2.Close()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if st := r.Stats(); st.Records != 1 || st.Open != 0 {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
	r.stop()
	if got := readAll(t, r.out); len(got) != 1 || got[0] != `{"kept":1}` {
		t.Fatalf("output %q", got)
	}
	if got := counter(t, r.reg, "sluice_drain_conn_errors_total", drain.ReasonInjected); got != 1 {
		t.Fatalf("conn errors (injected) = %v, want 1", got)
	}
}

// waitClosed waits until the drainer has closed c: reading it ends, with EOF
// or, if the drainer left data unread, with a reset.
func waitClosed(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the drainer did not close the connection: %v", err)
	}
}

// setFault sets a fault point's action until restore is called.
func setFault(t testing.TB, name string, a *fault.Action) (restore func()) {
	t.Helper()
	p, ok := fault.Lookup(name)
	if !ok {
		t.Fatalf("fault point %s is not registered", name)
	}
	old := p.Swap(a)
	return func() { p.Set(old) }
}

func TestNew_InvalidOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts drain.Options
	}{
		{"no socket", drain.Options{Out: "-"}},
		{"no output", drain.Options{Socket: "/tmp/x.sock"}},
		{"socket path too long", drain.Options{Socket: "/tmp/" + strings.Repeat("s", 120), Out: "-"}},
		{"negative rotate", drain.Options{Socket: "/tmp/x.sock", Out: "-", RotateBytes: -1}},
		{"mode beyond perm bits", drain.Options{Socket: "/tmp/x.sock", Out: "-", SocketMode: os.ModeSetuid | 0o600}},
		{"owner cannot write", drain.Options{Socket: "/tmp/x.sock", Out: "-", SocketMode: 0o400}},
		{"negative max line", drain.Options{Socket: "/tmp/x.sock", Out: "-", MaxLine: -1}},
		{"unknown framing", drain.Options{Socket: "/tmp/x.sock", Out: "-", Framing: "xml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := drain.New(tc.opts); !errors.Is(err, drain.ErrInvalidOptions) {
				t.Fatalf("New = %v, want ErrInvalidOptions", err)
			}
		})
	}
}

// A connection still waiting in the listen backlog when the shutdown starts
// is taken in and drained, not reset.
func TestServer_ShutdownTakesInWaitingConnections(t *testing.T) {
	restore := setFault(t, "drain.accept.before", &fault.Action{Kind: fault.Delay, Min: time.Hour})
	defer restore()
	r := start(t, drain.Options{})
	const conns = 3
	for i := range conns {
		c := dial(t, r.Addr()) // completes in the kernel: the drainer never calls Accept
		fmt.Fprintf(c, "{\"c\":%d}\n", i)
		c.Close()
	}
	if st := r.Stats(); st.Connections != 0 {
		t.Fatalf("test setup: %d connections accepted despite the accept delay", st.Connections)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if got := len(readAll(t, r.out)); got != conns {
		t.Fatalf("%d of %d lines from waiting connections in the output", got, conns)
	}
	if got := r.Stats().Connections; got != conns {
		t.Fatalf("connections = %d, want %d", got, conns)
	}
}

func TestServer_PeerUIDs(t *testing.T) {
	me := uint32(os.Getuid())
	t.Run("allowed", func(t *testing.T) {
		r := start(t, drain.Options{PeerUIDs: []uint32{me + 1, me}})
		c := dial(t, r.Addr())
		io.WriteString(c, "{}\n")
		c.Close()
		testkit.WaitFor(t, 10*time.Second, func() error {
			if st := r.Stats(); st.Records != 1 || st.Open != 0 {
				return fmt.Errorf("%+v", st)
			}
			return nil
		})
	})
	t.Run("refused", func(t *testing.T) {
		r := start(t, drain.Options{PeerUIDs: []uint32{me + 1}})
		c := dial(t, r.Addr())
		io.WriteString(c, "{}\n")
		waitClosed(t, c)
		if got := counter(t, r.reg, "sluice_drain_conn_errors_total", drain.ReasonPeerUID); got != 1 {
			t.Fatalf("conn errors (peer_uid) = %v, want 1", got)
		}
		if st := r.Stats(); st.Records != 0 {
			t.Fatalf("a refused peer's record was written: %+v", st)
		}
	})
}

// A lines connection keeps being read while the output write stalls: the
// sender is not held back by the drainer's disk until linesAhead chunks
// wait. Here the first write stalls for a minute (the test's cleanup cuts
// it short) while the sender writes 1 MiB, far more than the socket's
// buffers hold; a drainer that reads only between writes lets that write
// finish only after the stall. Nothing is lost: every line is in the
// output once the stall ends.
func TestServer_LinesReadsWhileOutputStalls(t *testing.T) {
	r := start(t, drain.Options{})
	restore := setFault(t, "drain.write.before", &fault.Action{Kind: fault.Delay, Min: time.Minute, Count: 1})
	defer restore()
	c := dial(t, r.Addr())
	line := `{"pad":"` + strings.Repeat("x", 1000) + `"}` + "\n"
	// The first line reaches the stalled write alone.
	if _, err := io.WriteString(c, line); err != nil {
		t.Fatal(err)
	}
	p, _ := fault.Lookup("drain.write.before")
	hits := p.Hits()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if p.Hits() == hits {
			return fmt.Errorf("the stalled write has not begun")
		}
		return nil
	})
	const n = 1024 // about 1 MiB
	c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, strings.Repeat(line, n)); err != nil {
		t.Fatalf("writing 1 MiB while the drainer's output stalls: %v (the drainer stopped reading)", err)
	}
	restore()
	c.Close()
	r.stop() // cuts the stall short
	if got := readAll(t, r.out); len(got) != n+1 {
		t.Fatalf("%d lines in the output, want %d", len(got), n+1)
	}
}
