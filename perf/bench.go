package perf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"
)

// Options configures Run.
type Options struct {
	// Exe is the sluice binary to re-execute (run, drain, bench-reader).
	Exe string
	// Records sizes the runs: the 100-records-per-message cases move
	// Records records; the 1-record-per-message cases and the raw JetStream
	// measurement Records/5 messages; the raw socket 10×Records records.
	// Zero: DefaultRecords.
	Records int
	// Reps is how many times each measurement is repeated. Zero: 3.
	Reps int
	// RecordSize is the size of each record in bytes. Zero: 200.
	RecordSize int
	// Dir holds the runs' temporary files. Empty: os.TempDir(). Keep it
	// short: Unix socket paths are limited to 107 bytes.
	Dir string
	// CPUProfileDir, when set, runs each sluice run and sluice drain under
	// the hidden bench-run and bench-drain commands with CPU profiles
	// written to this directory, named by case, process and repetition.
	CPUProfileDir string
	// LatencyFor is how long each latency measurement publishes: once as
	// fast as the queue takes records (the sustained maximum, producer and
	// drainer running together), then at half that rate. Zero: 5s.
	LatencyFor time.Duration
	// Progress receives one line per measurement as it completes. Nil: none.
	Progress io.Writer
	// Now stamps the report. Nil: time.Now.
	Now func() time.Time
}

// DefaultRecords is Options.Records' default: about 30 s per repetition on
// a 2-core machine.
const DefaultRecords = 1_000_000

func (o Options) withDefaults() (Options, error) {
	if o.Records == 0 {
		o.Records = DefaultRecords
	}
	if o.Reps == 0 {
		o.Reps = 3
	}
	if o.RecordSize == 0 {
		o.RecordSize = 200
	}
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.LatencyFor <= 0 {
		o.LatencyFor = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	switch {
	case o.Exe == "":
		return o, fmt.Errorf("%w: no sluice binary", ErrBadOptions)
	case o.Records < 500:
		return o, fmt.Errorf("%w: --records %d: at least 500", ErrBadOptions, o.Records)
	case o.Reps < 1:
		return o, fmt.Errorf("%w: --reps %d: at least 1", ErrBadOptions, o.Reps)
	case o.RecordSize < 170 || o.RecordSize > 64<<10:
		// load.AppendRecord's fixed fields take ~160 bytes.
		return o, fmt.Errorf("%w: record size %d: 170 to 65536", ErrBadOptions, o.RecordSize)
	}
	return o, nil
}

// Row keys, stable for JSON readers.
const (
	KeySocketRecords  = "raw_socket_records"
	KeySocketMB       = "raw_socket_mb"
	KeyJSPublish      = "raw_js_publish"
	KeyJSConsume      = "raw_js_consume"
	KeyLines1         = "sluice_lines_1"
	KeyLines100       = "sluice_lines_100"
	KeyAcked1         = "sluice_acked_1"
	KeyAcked100       = "sluice_acked_100"
	KeyLines100Flight = "sluice_lines_100_flight"
	KeyRatioFlight    = "ratio_lines_100_flight_vs_off"
	// The three-step transform (filter, set two fields, delete one), and
	// the same with pipeline.order_by.
	KeyLines100Transform = "sluice_lines_100_transform"
	KeyLines100Ordered   = "sluice_lines_100_ordered"
	KeyRatioTransform    = "ratio_lines_100_transform_vs_validate"
	KeyRatioOrdered      = "ratio_lines_100_ordered_vs_unordered"
	KeyRatioLines1       = "ratio_lines_1_vs_consume"
	KeyRatioLines100S    = "ratio_lines_100_vs_socket"
	KeyRatioLines100C    = "ratio_lines_100_vs_consume100"
	KeyRatioAcked1       = "ratio_acked_1_vs_consume"
	KeyRatioAcked100S    = "ratio_acked_100_vs_socket"
	KeyRatioAcked100C    = "ratio_acked_100_vs_consume100"
	KeyRatioAckedLine    = "ratio_acked_100_vs_lines_100"
	KeyJSConsumeCPU      = "raw_js_consume_cpu"
	KeyJSPublishSync     = "raw_js_publish_sync_always"
	KeyJSConsumeSync     = "raw_js_consume_sync_always"
	KeyRatioSyncPub      = "ratio_publish_sync_always_vs_interval"
	KeyRatioSyncCon      = "ratio_consume_sync_always_vs_interval"
	KeyLatLines          = "latency_lines" // + "_p50", "_p99", "_max"
	KeyLatAcked          = "latency_acked"
)

// e2eCase is one end-to-end configuration.
type e2eCase struct {
	key, name, framing string
	perMsg             int
	env                []string // for sluice run
	config             string   // a config file for sluice run (--config); "": none
}

var e2eCases = []e2eCase{
	{KeyLines1, "sluice lines, 1 rec/msg", "lines", 1, nil, ""},
	{KeyLines100, "sluice lines, 100 rec/msg", "lines", 100, nil, ""},
	{KeyAcked1, "sluice acked, 1 rec/msg", "acked", 1, nil, ""},
	{KeyAcked100, "sluice acked, 100 rec/msg", "acked", 100, nil, ""},
	{KeyLines100Flight, "sluice lines, 100 rec/msg, flight recorder on", "lines", 100, []string{"SLUICE_FLIGHT_ENABLED=true", "SLUICE_FLIGHT_DIR=" + os.TempDir()}, ""},
	{KeyLines100Transform, "sluice lines, 100 rec/msg, 3-step transform", "lines", 100, nil, TransformConfig},
	{KeyLines100Ordered, "sluice lines, 100 rec/msg, 3-step transform, order_by", "lines", 100, nil, TransformConfig + "pipeline:\n  order_by: key\n"},
}

// TransformConfig is the processing of the transform cases: a filter, a set
// of two fields by expressions and a delete of one, on sluice load's
// records. It keeps every record (EndToEnd counts the drainer's lines).
const TransformConfig = `process:
  steps:
    - filter: 'key != "drop"'
    - set: {run: 'upper(run)', next: 'seq + 1'}
    - delete: [tags]
`

// Run runs every measurement o.Reps times and returns the report. A
// framing that is not available is reported as n/a; any other failure ends
// the run with an error.
func Run(ctx context.Context, o Options) (*Report, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.CPUProfileDir != "" {
		if err := os.MkdirAll(o.CPUProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("perf: cpu profile dir: %w", err)
		}
		// The sluice run children run in other directories.
		if o.CPUProfileDir, err = filepath.Abs(o.CPUProfileDir); err != nil {
			return nil, fmt.Errorf("perf: cpu profile dir: %w", err)
		}
	}
	r := newReport(o)
	dir, err := os.MkdirTemp(o.Dir, "sluice-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	small := max(o.Records/5, 100)
	na := map[string]string{} // framing → why it is not available

	for rep := 1; rep <= o.Reps; rep++ {
		r.startRep()
		fmt.Fprintf(o.Progress, "rep %d/%d\n", rep, o.Reps)
		sr, err := RawSocket(ctx, o.Exe, dir, int64(o.Records)*10, o.RecordSize)
		if err != nil {
			return nil, err
		}
		r.add(KeySocketRecords, sr.RecordsPerSec())
		r.add(KeySocketMB, sr.MBPerSec())
		fmt.Fprintf(o.Progress, "  raw socket       %12.0f records/s %8.1f MB/s\n", sr.RecordsPerSec(), sr.MBPerSec())

		jsDir, err := os.MkdirTemp(dir, "js-")
		if err != nil {
			return nil, err
		}
		jr, err := RawJetStream(ctx, jsDir, small, o.RecordSize, false)
		_ = os.RemoveAll(jsDir)
		if err != nil {
			return nil, err
		}
		jsDir, err = os.MkdirTemp(dir, "js-sync-")
		if err != nil {
			return nil, err
		}
		// An fsync per publish: a bounded count keeps the run short.
		js, err := RawJetStream(ctx, jsDir, min(small, 20000), o.RecordSize, true)
		_ = os.RemoveAll(jsDir)
		if err != nil {
			return nil, err
		}
		r.add(KeyJSPublishSync, js.PublishPerSec())
		r.add(KeyJSConsumeSync, js.ConsumePerSec())
		fmt.Fprintf(o.Progress, "  raw JetStream, sync always %9.0f msgs/s published, %.0f msgs/s consumed\n", js.PublishPerSec(), js.ConsumePerSec())
		r.add(KeyJSPublish, jr.PublishPerSec())
		r.add(KeyJSConsume, jr.ConsumePerSec())
		r.add(KeyJSConsumeCPU, jr.ConCPU.Seconds()/float64(jr.Messages)*1e6)
		fmt.Fprintf(o.Progress, "  raw JetStream    %12.0f msgs/s published, %.0f msgs/s consumed\n", jr.PublishPerSec(), jr.ConsumePerSec())

		for _, c := range e2eCases {
			if why, ok := na[c.framing]; ok {
				r.setNA(c.key, why)
				continue
			}
			n := o.Records
			if c.perMsg == 1 {
				n = small
			}
			eo := E2EOptions{Exe: o.Exe, Dir: dir, Framing: c.framing, Records: n, PerMessage: c.perMsg, RecordSize: o.RecordSize, Env: c.env, Config: c.config}
			if o.CPUProfileDir != "" {
				eo.CPUProfile = filepath.Join(o.CPUProfileDir, fmt.Sprintf("%s-rep%d.pprof", c.key, rep))
				eo.DrainCPUProfile = filepath.Join(o.CPUProfileDir, fmt.Sprintf("%s-drain-rep%d.pprof", c.key, rep))
			}
			er, err := EndToEnd(ctx, eo)
			if errors.Is(err, ErrNotAvailable) {
				na[c.framing] = fmt.Sprintf("n/a (%s framing not available)", c.framing)
				fmt.Fprintf(o.Progress, "  %-26s %s: %v\n", c.name, na[c.framing], err)
				r.setNA(c.key, na[c.framing])
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
			r.add(c.key, er.RecordsPerSec())
			r.addRSS(c.key, er)
			r.add(c.key+"_cpu_sluice", er.CPUPerMillion(er.SluiceCPU))
			r.add(c.key+"_cpu_drain", er.CPUPerMillion(er.DrainCPU))
			fmt.Fprintf(o.Progress, "  %-26s %9.0f records/s  RSS peak %.1f MiB steady %.1f MiB  CPU-s/M records: sluice %.2f drainer %.2f\n",
				c.name, er.RecordsPerSec(), mib(er.PeakRSS), mib(er.SteadyRSS), er.CPUPerMillion(er.SluiceCPU), er.CPUPerMillion(er.DrainCPU))
		}

		for _, lc := range []struct{ key, framing string }{{KeyLatLines, "lines"}, {KeyLatAcked, "acked"}} {
			if why, ok := na[lc.framing]; ok {
				r.setLatencyNA(lc.key, why)
				continue
			}
			// The maximum: the rate sustained end to end with the
			// producer running (the drain-only rate above is higher,
			// since nothing publishes meanwhile).
			lo := LatencyOptions{Exe: o.Exe, Dir: dir, Framing: lc.framing, PerMessage: 100, RecordSize: o.RecordSize, Duration: o.LatencyFor}
			mr, err := Latency(ctx, lo)
			if err != nil {
				return nil, fmt.Errorf("latency, %s, unpaced: %w", lc.framing, err)
			}
			r.add(lc.key+"_sustained", mr.Sustained)
			lo.Rate = mr.Sustained / 2
			rate := lo.Rate
			lr, err := Latency(ctx, lo)
			if err != nil {
				return nil, fmt.Errorf("latency, %s: %w", lc.framing, err)
			}
			ms := func(d time.Duration) float64 { return d.Seconds() * 1e3 }
			r.add(lc.key+"_p50", ms(lr.P50))
			r.add(lc.key+"_p99", ms(lr.P99))
			r.add(lc.key+"_max", ms(lr.Max))
			fmt.Fprintf(o.Progress, "  latency %-6s at %9.0f records/s: p50 %v  p99 %v  max %v (%d records)\n", lc.framing, rate, lr.P50, lr.P99, lr.Max, lr.Records)
		}
		r.addRatios()
	}
	r.finish()
	return r, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func ratio(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return math.NaN()
	}
	return a / b
}
