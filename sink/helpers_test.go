package sink_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/record"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/sluice-dev/sluice/sink"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// socketPath returns a socket path in a fresh short directory: Unix socket
// paths must be shorter than 108 bytes and t.TempDir() can be longer.
func socketPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(testkit.ShortDir(t), "s.sock")
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// newWriter returns a started Writer on path with a private registry; it is
// closed when the test ends.
func newWriter(t testing.TB, opts sink.Options) (*sink.Writer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	if opts.Logger == nil {
		opts.Logger = discard
	}
	w := sink.New(opts)
	w.Start(context.Background())
	t.Cleanup(func() { w.Close() })
	return w, reg
}

// counter reads one sink metric from reg.
func counter(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := true
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				ok = ok && found
			}
			if !ok {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

// total sums every series of one sink metric in reg (all label values);
// 0 when it has none.
func total(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func reconnects(t testing.TB, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	return counter(t, reg, "sluice_sink_reconnects_total", "reason", reason)
}

// drainer is a test listener on a real Unix socket. handle runs once per
// accepted connection, in its own goroutine, with the connection's 0-based
// index; it must return once the connection is closed.
type drainer struct {
	ln       *net.UnixListener
	accepted atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn // guarded by mu
	stopped  bool       // guarded by mu; set by stop: a connection accepted after it is closed at once
	wg       sync.WaitGroup
}

func startDrainer(t testing.TB, path string, handle func(n int, c net.Conn)) *drainer {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	d := &drainer{ln: ln}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(d.accepted.Add(1) - 1)
			d.mu.Lock()
			d.conns = append(d.conns, c)
			if d.stopped { // Accept won the race with stop's ln.Close
				c.Close()
			}
			d.mu.Unlock()
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				defer c.Close()
				handle(n, c)
			}()
		}
	}()
	t.Cleanup(d.stop)
	return d
}

// stop closes the listener (which removes the socket file) and every
// accepted connection, and waits for the handlers. It is idempotent.
func (d *drainer) stop() {
	d.ln.Close()
	d.mu.Lock()
	d.stopped = true
	for _, c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// finish closes the listener and waits for the handlers to read their
// connections to EOF: call it after the Writer was closed, so that nothing
// written is thrown away.
func (d *drainer) finish(t testing.TB) {
	t.Helper()
	d.ln.Close()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("drainer handlers did not reach EOF: a connection was never closed")
	}
}

// lineLog collects the complete lines each connection delivered, and counts
// partial lines left at EOF (which a lines drainer discards).
type lineLog struct {
	mu      sync.Mutex
	lines   map[int][]string // guarded by mu; by connection index
	partial int              // guarded by mu
}

func newLineLog() *lineLog { return &lineLog{lines: map[int][]string{}} }

func (g *lineLog) handle(n int, c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if len(line) > 0 {
				g.mu.Lock()
				g.partial++
				g.mu.Unlock()
			}
			return
		}
		g.mu.Lock()
		g.lines[n] = append(g.lines[n], line[:len(line)-1])
		g.mu.Unlock()
	}
}

func (g *lineLog) all() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for n := 0; n < 1000; n++ {
		out = append(out, g.lines[n]...)
	}
	return out
}

func (g *lineLog) on(n int) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.lines[n]...)
}

func (g *lineLog) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, l := range g.lines {
		n += len(l)
	}
	return n
}

// recs makes records from strings.
func recs(data ...string) []record.Record {
	out := make([]record.Record, len(data))
	for i, d := range data {
		out[i] = record.Record{ID: record.ID{Stream: "T", Seq: 1, Index: uint32(i)}, Data: []byte(d)}
	}
	return out
}

// sendResult is what a Send run in a goroutine returned.
type sendResult struct {
	err   error
	dones int32
}

// sendAsync runs Send in a goroutine; the channel yields its result.
func sendAsync(ctx context.Context, w *sink.Writer, rs []record.Record) <-chan sendResult {
	ch := make(chan sendResult, 1)
	go func() {
		var dones atomic.Int32
		err := w.Send(ctx, rs, func(err error) {
			if err == nil {
				dones.Add(1)
			}
		})
		ch <- sendResult{err: err, dones: dones.Load()}
	}()
	return ch
}

// await returns the result from ch, failing after a generous stall guard.
func await(t testing.TB, ch <-chan sendResult) sendResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("Send stalled for 30s")
		return sendResult{}
	}
}
