package perf

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sluice-dev/sluice/report"
)

// SoakOptions configures Soak.
type SoakOptions struct {
	Exe        string
	Dir        string
	Framing    string        // "" = acked
	Rate       float64       // records per second; 0 = 20,000
	PerMessage int           // 0 = 100
	RecordSize int           // 0 = 200
	Duration   time.Duration // 0 = 60s
	Every      time.Duration // sampling interval; 0 = 1s
	// FreezeDrainer stops the drainer (SIGSTOP) once sluice is running and
	// lets it go on (SIGCONT) when the producer is done: memory and
	// reconnects with a live but stopped drainer.
	FreezeDrainer bool
	Progress      io.Writer // one line per sample; nil = none
}

// SoakSample is the state of the processes at one moment of a soak.
type SoakSample struct {
	At         time.Duration `json:"at_ns"`
	Published  int64         `json:"published"` // records sent to the queue so far
	Refused    int64         `json:"refused"`   // records of publishes the full stream refused (known at the end)
	Drained    int64         `json:"drained"`   // records in the drainer's files so far
	SluiceRSS  int64         `json:"sluice_rss"`
	DrainRSS   int64         `json:"drain_rss"`
	Goroutines int64         `json:"goroutines"` // of sluice run (go_goroutines); -1 when the scrape failed
	Reconnects int64         `json:"reconnects"` // the sink's reconnects so far (sluice_sink_reconnects_total, every reason); -1 when the scrape failed
	Redials    int64         `json:"redials"`    // failed dials and handshakes so far (sluice_sink_dial_failures_total + sluice_sink_handshake_failures_total)
	SluiceFDs  int           `json:"sluice_fds"`
	DrainFDs   int           `json:"drain_fds"`
	DataBytes  int64         `json:"data_bytes"` // the embedded server's data directory
	OutBytes   int64         `json:"out_bytes"`  // the drainer's output directory
}

// Soak runs a producer at a fixed rate, sluice run and sluice drain (as
// child processes, the drainer first) for o.Duration and samples every
// o.Every: RSS, sluice's goroutines, open descriptors of both processes,
// and the disk used by the queue's data directory and the drainer's
// output. It ends with the producer stopped and the drainer caught up, and
// returns the samples.
func Soak(ctx context.Context, o SoakOptions) (samples []SoakSample, err error) {
	if o.Framing == "" {
		o.Framing = "acked"
	}
	if o.Rate <= 0 {
		o.Rate = 20000
	}
	if o.PerMessage <= 0 {
		o.PerMessage = 100
	}
	if o.RecordSize <= 0 {
		o.RecordSize = 200
	}
	if o.Duration <= 0 {
		o.Duration = time.Minute
	}
	if o.Every <= 0 {
		o.Every = time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	ctx, cancel := context.WithTimeout(ctx, o.Duration+2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp(o.Dir, "soak-")
	if err != nil {
		return nil, err
	}
	defer keepOnError(dir, &err)
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	sock, out, data := filepath.Join(dir, "s.sock"), filepath.Join(dir, "out"), filepath.Join(dir, "data")
	env := append(os.Environ(), "SLUICE_FAULTS=", "SLUICE_ADMIN_TOKEN_FILE="+filepath.Join(dir, "admin.token"))
	drainer, err := startChild(o.Exe, []string{"drain", "--socket", sock, "--out", out, "--log-format", "json", "--framing", o.Framing}, env, filepath.Join(dir, "drain.log"))
	if err != nil {
		return nil, err
	}
	defer drainer.stop()
	svc, err := startChild(o.Exe, []string{"run", "--socket", sock, "--framing", o.Framing, "--data-dir", data,
		"--listen", "127.0.0.1:0", "--admin", admin, "--log-format", "json"}, env, filepath.Join(dir, "run.log"))
	if err != nil {
		return nil, err
	}
	defer svc.stop()
	var url string
	select {
	case url = <-svc.url:
	case <-svc.done:
		return nil, svc.startFailure("sluice run", o.Framing)
	case <-ctx.Done():
		return nil, fmt.Errorf("perf: sluice run not ready: %w", ctx.Err())
	}
	nc, err := nats.Connect(url, nats.Name("sluice-bench-soak"), nats.Token(childToken))
	if err != nil {
		return nil, fmt.Errorf("perf: connect publisher to %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(pubPending))
	if err != nil {
		return nil, err
	}
	if o.FreezeDrainer {
		select {
		case <-svc.running:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		time.Sleep(500 * time.Millisecond) // the sink connects
		if err := drainer.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			return nil, fmt.Errorf("perf: stop the drainer: %w", err)
		}
		defer drainer.cmd.Process.Signal(syscall.SIGCONT) //nolint:errcheck // best effort on the way out
	}
	pubErr := make(chan error, 1)
	var published, refused int64
	go func() {
		_, err := publishPaced(ctx, js, LatencyOptions{Rate: o.Rate, PerMessage: o.PerMessage, RecordSize: o.RecordSize, Duration: o.Duration}, &published, &refused)
		pubErr <- err
	}()
	start := time.Now()
	sample := func() SoakSample {
		// Drained first, so that a sample never shows more drained than sent.
		drained, _ := countLines(out)
		s := SoakSample{At: time.Since(start), Published: loadInt(&published), Refused: loadInt(&refused), Drained: drained, Goroutines: -1, Reconnects: -1}
		if st, err := ReadStatus(svc.cmd.Process.Pid); err == nil {
			s.SluiceRSS = st.VmRSS
		}
		if st, err := ReadStatus(drainer.cmd.Process.Pid); err == nil {
			s.DrainRSS = st.VmRSS
		}
		s.SluiceFDs, s.DrainFDs = countFDs(svc.cmd.Process.Pid), countFDs(drainer.cmd.Process.Pid)
		s.DataBytes, s.OutBytes = dirSize(data), dirSize(out)
		if mfs, err := scrape(ctx, "http://"+admin+"/metrics"); err == nil {
			s.Goroutines, s.Reconnects = int64(sum(mfs, "go_goroutines")), int64(sum(mfs, "sluice_sink_reconnects_total"))
			s.Redials = int64(sum(mfs, "sluice_sink_dial_failures_total") + sum(mfs, "sluice_sink_handshake_failures_total"))
		}
		fmt.Fprintf(o.Progress, "  %6.0fs  published %9d  refused %7d  drained %9d  RSS sluice %6.1f MiB drainer %6.1f MiB  goroutines %4d  reconnects %3d (failed dials %3d)  fds %3d/%3d  disk data %7.1f MiB out %7.1f MiB\n",
			s.At.Seconds(), s.Published, s.Refused, s.Drained, mib(s.SluiceRSS), mib(s.DrainRSS), s.Goroutines, s.Reconnects, s.Redials, s.SluiceFDs, s.DrainFDs, mib(s.DataBytes), mib(s.OutBytes))
		return s
	}
	t := time.NewTicker(o.Every)
	defer t.Stop()
	var total int64 = -1
	for {
		select {
		case <-ctx.Done():
			return samples, fmt.Errorf("%w: soak: %v", ErrIncomplete, ctx.Err())
		case <-svc.done:
			return samples, fmt.Errorf("%w: sluice run exited; see %s", ErrIncomplete, svc.log)
		case <-drainer.done:
			return samples, fmt.Errorf("%w: sluice drain exited; see %s", ErrIncomplete, drainer.log)
		case err := <-pubErr:
			if err != nil {
				return samples, err
			}
			total = loadInt(&published) - loadInt(&refused)
			if o.FreezeDrainer {
				_ = drainer.cmd.Process.Signal(syscall.SIGCONT)
			}
		case <-t.C:
			s := sample()
			samples = append(samples, s)
			if total >= 0 && s.Drained >= total {
				return samples, nil
			}
		}
	}
}

func loadInt(p *int64) int64 { return atomic.LoadInt64(p) }

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// countFDs is the number of open descriptors of pid, -1 when unknown.
func countFDs(pid int) int {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(es)
}

// dirSize is the disk use of the files under dir (their sizes), 0 when it
// cannot be read yet.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// scrape reads a Prometheus endpoint.
func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// sum adds up every series of a counter or gauge family; 0 when absent.
func sum(mfs map[string]*dto.MetricFamily, name string) float64 {
	var v float64
	for _, m := range mfs[name].GetMetric() {
		v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return v
}

// SoakReport is the HTML page of a soak: throughput, then memory,
// goroutines and descriptors, and disk over time.
func SoakReport(o SoakOptions, samples []SoakSample) report.Run {
	var rs []report.Sample
	var prev SoakSample
	var sRSS, dRSS, gor, sFD, dFD, data, out []report.Point
	for _, s := range samples {
		rs = append(rs, report.Sample{At: s.At, Published: s.Published - prev.Published, Drained: s.Drained - prev.Drained})
		prev = s
		x := s.At.Seconds()
		sRSS, dRSS = append(sRSS, report.Point{X: x, Y: mib(s.SluiceRSS)}), append(dRSS, report.Point{X: x, Y: mib(s.DrainRSS)})
		gor = append(gor, report.Point{X: x, Y: float64(s.Goroutines)})
		sFD, dFD = append(sFD, report.Point{X: x, Y: float64(s.SluiceFDs)}), append(dFD, report.Point{X: x, Y: float64(s.DrainFDs)})
		data, out = append(data, report.Point{X: x, Y: mib(s.DataBytes)}), append(out, report.Point{X: x, Y: mib(s.OutBytes)})
	}
	chart := func(id, title, y string, series ...report.Series) report.Chart {
		return report.Chart{ID: id, Title: title, XLabel: "time since start (s)", YLabel: y, Series: series}
	}
	return report.Run{
		Title:    "sluice bench --soak",
		Summary:  []report.Field{{Name: "framing", Value: o.Framing}, {Name: "rate", Value: fmt.Sprintf("%.0f records/s, %d per message", o.Rate, o.PerMessage)}, {Name: "duration", Value: o.Duration.String()}},
		Samples:  rs,
		Interval: o.Every,
		Metrics:  true,
		Verified: false,
		Extra: []report.ExtraChart{
			{Chart: chart("chart-rss", "Resident memory", "MiB", report.Series{Name: "sluice run", Points: sRSS}, report.Series{Name: "drainer", Points: dRSS}),
				Note: "VmRSS of sluice run (with its embedded JetStream server) and of the drainer."},
			{Chart: chart("chart-goroutines", "Goroutines of sluice run", "goroutines", report.Series{Name: "go_goroutines", Points: gor}),
				Note: "From sluice run's /metrics."},
			{Chart: chart("chart-fds", "Open file descriptors", "descriptors", report.Series{Name: "sluice run", Points: sFD}, report.Series{Name: "drainer", Points: dFD}),
				Note: "Entries of /proc/PID/fd."},
			{Chart: chart("chart-disk", "Disk use", "MiB", report.Series{Name: "queue data directory", Points: data}, report.Series{Name: "drainer output", Points: out}),
				Note: "Sizes of the files under the embedded server's data directory and the drainer's output directory."},
		},
	}
}

// SaveSoakReport writes the soak's HTML report into dir ("" = the current
// directory), named by the time, and returns its path.
func SaveSoakReport(dir string, o SoakOptions, samples []SoakSample) (string, error) {
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, fmt.Sprintf("soak-%s.html", time.Now().UTC().Format("20060102T150405Z")))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := report.Write(f, SoakReport(o, samples)); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}
