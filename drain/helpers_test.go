package drain_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sluice-dev/sluice/internal/testkit"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/sluice-dev/sluice/drain"
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

// readAll returns every output line in dir, in order.
func readAll(t testing.TB, dir string) []string {
	t.Helper()
	var lines []string
	if err := drain.ReadDir(dir, func(line []byte) error {
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

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }
