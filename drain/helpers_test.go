package drain_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluice-dev/sluice/internal/testkit"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/ledger"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// running is a Server being served in the background.
type running struct {
	*drain.Server
	reg    *prometheus.Registry
	out    string // output directory ("" for stdout)
	cancel context.CancelFunc
	served chan error // receives Serve's result
	once   sync.Once
	err    error
}

// stop cancels Serve's context and returns what Serve returned.
func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.served
	})
	return r.err
}

// start builds a Server from opts (filling in a socket in a short dir, an
// output dir, a quiet logger and a private registry when they are empty),
// listens and serves it until the test ends.
func start(t testing.TB, opts drain.Options) *running {
	t.Helper()
	if opts.Socket == "" {
		opts.Socket = filepath.Join(testkit.ShortDir(t), "d.sock")
	}
	if opts.Out == "" {
		opts.Out = filepath.Join(t.TempDir(), "out")
	}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	reg := prometheus.NewRegistry()
	if opts.Registerer == nil {
		opts.Registerer = reg
	}
	srv, err := drain.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Server: srv, reg: reg, cancel: cancel, served: make(chan error, 1)}
	if opts.Out != "-" {
		r.out = opts.Out
	}
	go func() { r.served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		r.stop()
		srv.Close()
	})
	return r
}

func dial(t testing.TB, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll returns every committed output line in dir, in order.
func readAll(t testing.TB, dir string) []string {
	t.Helper()
	var lines []string
	if err := ledger.ReadCommitted(dir, func(line []byte) error {
		lines = append(lines, string(line))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return lines
}

// counter returns the value of a metric (with label value lv, if given) from
// reg.
func counter(t testing.TB, reg *prometheus.Registry, name string, lv ...string) float64 {
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
			if len(lv) > 0 && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != lv[0]) {
				continue
			}
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s%v not found", name, lv)
	return 0
}

// stats is what the drainer's metrics say.
type stats struct {
	Records     uint64 // sluice_drain_records_total
	Bytes       uint64 // sluice_drain_bytes_total
	Connections uint64 // sluice_drain_connections_total
	Open        int64  // sluice_drain_connections
	TornLines   uint64 // sluice_drain_torn_lines_total
	ConnErrors  uint64 // sluice_drain_conn_errors_total, every reason
	Rotations   uint64 // sluice_drain_files_rotated_total
	Frames      uint64 // sluice_drain_frames_total
	Duplicates  uint64 // sluice_drain_duplicates_total
	Refused     uint64 // sluice_drain_refused_peers_total
}

// Stats reads the metrics of r from its registry. It panics if the
// registry cannot be gathered (it is the test's own; that is a bug), so
// that a fuzz function may call it on any goroutine.
func (r *running) Stats() stats {
	mfs, err := r.reg.Gather()
	if err != nil {
		panic(err)
	}
	sum := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			sum[mf.GetName()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	u := func(name string) uint64 { return uint64(sum[name]) }
	return stats{
		Records:     u("sluice_drain_records_total"),
		Bytes:       u("sluice_drain_bytes_total"),
		Connections: u("sluice_drain_connections_total"),
		Open:        int64(sum["sluice_drain_connections"]),
		TornLines:   u("sluice_drain_torn_lines_total"),
		ConnErrors:  u("sluice_drain_conn_errors_total"),
		Rotations:   u("sluice_drain_files_rotated_total"),
		Frames:      u("sluice_drain_frames_total"),
		Duplicates:  u("sluice_drain_duplicates_total"),
		Refused:     u("sluice_drain_refused_peers_total"),
	}
}

// countHook installs, with set (drain.SetReceivedHook, drain.SetAckHook),
// a hook that counts its calls, until the test ends. Call it before the
// Server starts: the hook is a package variable its goroutines read.
func countHook(t testing.TB, set func(func()) (restore func())) *atomic.Uint64 {
	t.Helper()
	var n atomic.Uint64
	t.Cleanup(set(func() { n.Add(1) }))
	return &n
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }
