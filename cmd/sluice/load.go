package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sluice-dev/sluice/load"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/report"
)

// loadOptions are sluice load's flags.
type loadOptions struct {
	url        string
	subject    string
	rate       float64
	count      int64
	duration   time.Duration
	publishers int
	maxPending int
	perMessage int
	size       int
	sizeSpread int
	keys       int
	invalid    float64
	runID      string
	verify     string        // drainer output directory; "" = no verification
	wait       time.Duration // after publishing, for stragglers (with verify)
	failOnDup  bool
	json       bool
	report     string // HTML report path; "" = none
	metricsURL string // sluice's /metrics, for reconnect markers; "" = none

	// pollEvery is how often the drainer's output is read during the run
	// (the latency resolution); 0 = 50ms. sampleEvery is the width of one
	// report sample; 0 = 1s. Tests shorten them.
	pollEvery   time.Duration
	sampleEvery time.Duration
}

// Limits of --verify without --count: the verifier keeps a bit per record.
const (
	verifyMaxRecords = 200_000_000 // ~25 MB per bitset
	verifyFastRate   = 5_000_000   // records/s assumed for an unlimited --rate
)

func newLoadCmd(g *globals) *cobra.Command {
	var o loadOptions
	cmd := &cobra.Command{
		Use:   "load [flags]",
		Short: "Publish realistic JSON records to the queue and verify that all of them came out",
		Long: `load publishes numbered JSON records (see the load package for the format) to
a NATS JetStream subject: by default to the embedded server of a 'sluice run'
on this machine. Several publishers publish asynchronously, each with a
bounded number of unacknowledged publishes, at --rate records per second or
as fast as the server acknowledges, for --count records or for --duration
(10s by default when --count is not given; --duration 0 without --count runs
until Ctrl-C).

Verification (--verify DIR) reads the reference drainer's output directory:
start the drainer with 'sluice drain --out DIR', and give load the same DIR.
load follows the files while it publishes, waits up to --wait after the last
publish for stragglers, reads them a last time, and reports what it
published, received, lost (with the first ids), duplicated and saw out of
order per key. It exits 1 if any valid record published in this run is
missing (or, with --fail-on-dup, duplicated). What DIR holds when load starts
is skipped, and records of other runs are ignored. Records made invalid with --invalid must not arrive: sluice sends
them to the dead-letter subject.

Latency is measured from publish to seen: from the moment a record's queue
message was published (the record's "ts") to the moment load read the
record's line back from DIR (DIR is read every 50 ms, so that is the
resolution). It includes the queue, sluice's processing and batching, the
socket, the drainer's write, and up to one read interval.

With --verify and no --count, the run stops at most at an upper bound of the
records the verifier was sized for (rate x duration, or 5M records/s x
duration with no --rate; at most 200M).

Output: a progress line while running (a progress bar when stdout is a
terminal; otherwise a plain line every 5 s), then a summary table. --json
prints one JSON object instead (the generator's result and the verifier's
report) and nothing else on stdout. --report FILE.html writes a
self-contained page with charts of throughput and latency per second, the
sink's reconnects marked (read from sluice's --metrics-url every second; if
it cannot be read there are no markers).`,
		Example: `  sluice drain --out /tmp/out &
  sluice run &
  sluice load --rate 20000 --duration 30s --verify /tmp/out --report load.html`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("duration") && o.count > 0 {
				o.duration = 0
			}
			logger, err := obs.NewLogger(g.stderr, cmp.Or(g.logFormat, "text"), cmp.Or(g.logLevel, "info"))
			if err != nil {
				return usageError{err}
			}
			ctx, stop := signalContext(logger)
			defer stop()
			return runLoad(ctx, g.stdout, g.stderr, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.url, "url", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated; user:password@ or a token@ in the URL for authentication")
	f.StringVar(&o.subject, "subject", load.DefaultSubject, "subject to publish to (a stream must capture it)")
	f.Float64Var(&o.rate, "rate", 0, "records per second over all publishers; 0 = as fast as possible")
	f.Int64Var(&o.count, "count", 0, "records to publish; 0 = until --duration")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "publish for this long (ignored when --count is given without it); 0 = until --count or Ctrl-C")
	f.IntVar(&o.publishers, "publishers", load.DefaultPublishers, "publishing goroutines")
	f.IntVar(&o.maxPending, "max-pending", load.DefaultMaxPending, "unacknowledged async publishes per publisher")
	f.IntVar(&o.perMessage, "per-message", load.DefaultPerMessage, "records per queue message (newline-separated)")
	f.IntVar(&o.size, "size", load.DefaultRecordSize, "mean record size in bytes")
	f.IntVar(&o.sizeSpread, "size-spread", 0, "record sizes are uniform in size ± spread")
	f.IntVar(&o.keys, "keys", load.DefaultKeys, "partition keys, for the per-key order check")
	f.Float64Var(&o.invalid, "invalid", 0, "fraction of records made invalid JSON, in [0, 1] (bound for the dead-letter subject)")
	f.StringVar(&o.runID, "run-id", "", "run id carried by every record ([A-Za-z0-9_.:-]); default random")
	f.StringVar(&o.verify, "verify", "", "verify against the drainer's output directory DIR ('sluice drain --out DIR')")
	f.DurationVar(&o.wait, "wait", 30*time.Second, "with --verify: how long after publishing ends to wait for missing records")
	f.BoolVar(&o.failOnDup, "fail-on-dup", false, "with --verify: exit 1 on duplicates too")
	f.BoolVar(&o.json, "json", false, "print one JSON object (generator result and verifier report) and nothing else on stdout")
	f.StringVar(&o.report, "report", "", "write an HTML report with throughput and latency charts to this file")
	f.StringVar(&o.metricsURL, "metrics-url", "http://127.0.0.1:9464/metrics", "sluice's metrics endpoint, scraped every second for reconnects; \"\" = do not scrape")
	return cmd
}

// genOptions maps the flags to the generator's options.
func (o loadOptions) genOptions() load.GenOptions {
	return load.GenOptions{
		Subject:    o.subject,
		Count:      o.count,
		Duration:   o.duration,
		Rate:       o.rate,
		PerMessage: o.perMessage,
		Publishers: o.publishers,
		MaxPending: o.maxPending,
		RecordSize: o.size,
		SizeSpread: o.sizeSpread,
		Keys:       o.keys,
		RunID:      o.runID,
		Invalid:    o.invalid,
	}
}

// verifyCapacity returns how many records the verifier is sized for: the
// most the run can publish.
func verifyCapacity(gen load.GenOptions) int64 {
	if gen.Count > 0 {
		return gen.Count
	}
	if gen.Duration <= 0 {
		return verifyMaxRecords
	}
	r := float64(verifyFastRate)
	slack := 0.0
	if gen.Rate > 0 {
		r = gen.Rate
		slack = float64(gen.Burst + gen.PerMessage*gen.Publishers)
	}
	return int64(min(float64(verifyMaxRecords), math.Ceil(r*gen.Duration.Seconds()*1.05+slack)+1))
}

// loadOutput is what --json prints.
type loadOutput struct {
	URL              string          `json:"url"`
	Subject          string          `json:"subject"`
	Generator        load.Result     `json:"generator"`
	RecordsPerSecond float64         `json:"records_per_second"`
	Verify           *load.Report    `json:"verify,omitempty"`
	VerifyDir        string          `json:"verify_dir,omitempty"`
	Reconnects       *int64          `json:"reconnects"` // null when the metrics could not be read
	Events           []eventJSON     `json:"events,omitempty"`
	Report           string          `json:"report,omitempty"`
	Interrupted      bool            `json:"interrupted,omitempty"`
	OK               bool            `json:"ok"`
	Samples          []report.Sample `json:"-"`
	start            time.Time       // wall-clock start
	elapsed          time.Duration   // publish start to the end of verification
}

type eventJSON struct {
	At    float64 `json:"at_s"`
	Label string  `json:"label"`
}

// runLoad is sluice load: publish, follow the drainer's output, wait for
// stragglers, report. It returns exitCodeError{1} when verification fails,
// after printing its report.
func runLoad(ctx context.Context, stdout, stderr io.Writer, o loadOptions) error {
	gen := o.genOptions()
	wd := gen.WithDefaults()
	if err := wd.Validate(); err != nil {
		return usageError{err}
	}
	if o.wait < 0 {
		return usageError{fmt.Errorf("--wait %v < 0", o.wait)}
	}
	if o.runID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		gen.RunID = "l" + hex.EncodeToString(b[:])
		wd.RunID = gen.RunID
	}
	if o.pollEvery <= 0 {
		o.pollEvery = 50 * time.Millisecond
	}
	if o.sampleEvery <= 0 {
		o.sampleEvery = time.Second
	}
	if o.verify != "" {
		if fi, err := os.Stat(o.verify); err != nil || !fi.IsDir() {
			return usageError{fmt.Errorf("--verify %s: not a directory (start the drainer with 'sluice drain --out %s' first)", o.verify, o.verify)}
		}
		gen.Count = verifyCapacity(wd)
	}

	nc, err := nats.Connect(o.url, nats.Name("sluice-load"), nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("load: connect to %s: %w", o.url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(max(4000, 2*wd.Publishers*wd.MaxPending)))
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}

	r := newLoadRun(o, gen)
	r.startBackground(ctx, stdout, stderr)
	res, genErr := load.Generate(ctx, js, gen, func(p load.Progress) { r.published.Store(p.Published) })
	out := loadOutput{URL: o.url, Subject: wd.Subject, Generator: res, RecordsPerSecond: res.RecordsPerSecond(), start: r.start}
	switch {
	case genErr == nil:
	case errors.Is(genErr, context.Canceled) || errors.Is(genErr, context.DeadlineExceeded):
		out.Interrupted = true
	default:
		r.stop()
		if errors.Is(genErr, load.ErrNoStream) {
			return fmt.Errorf("%w: is 'sluice run' running with queue.subjects covering it?", genErr)
		}
		return genErr
	}
	r.published.Store(res.Published + res.Invalid)
	r.phase.Store(phaseWaiting)

	if r.v != nil {
		r.v.Shrink(res.MaxSeq)
		if err := r.v.Expect(res); err != nil {
			r.stop()
			return err
		}
		r.expected.Store(res.Published)
		r.waitForStragglers(ctx, o.wait)
	}
	r.stop()
	out.elapsed = time.Since(r.start)
	out.OK = true
	if r.v != nil {
		rep := r.v.Report()
		out.Verify, out.VerifyDir = &rep, o.verify
		out.OK = rep.OK(o.failOnDup)
	}
	if n, ok := r.scraper.total(); ok {
		out.Reconnects = &n
	}
	for _, e := range r.events {
		out.Events = append(out.Events, eventJSON{At: e.At.Seconds(), Label: e.Label})
	}
	out.Samples = r.samples

	if o.report != "" {
		if err := writeLoadReport(o, out, r.events, r.scraper.ok()); err != nil {
			return err
		}
		out.Report = o.report
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		writeLoadSummary(stdout, o, out)
	}
	if res.Failed > 0 {
		fmt.Fprintf(stderr, "sluice load: warning: %d records were never acknowledged by the queue (last error: %s)\n", res.Failed, res.LastError)
	}
	if !out.OK {
		return exitCodeError{exitError}
	}
	return nil
}

// Phases of a run, for the progress display.
const (
	phasePublishing int32 = iota
	phaseWaiting
)

// loadRun is the state of one sluice load run besides the generator: the
// drainer-output follower, the per-interval sampler and the display. Both
// goroutines are started by startBackground and stopped by stop.
type loadRun struct {
	o      loadOptions
	gen    load.GenOptions
	runID  string
	start  time.Time
	v      *load.Verifier // nil without --verify
	tail   *load.Tail     // nil without --verify; owned by the poller goroutine until stop
	finish chan struct{}  // closed by stop
	wg     sync.WaitGroup

	published atomic.Int64 // records acknowledged so far (from Generate's progress)
	expected  atomic.Int64 // valid records published, once publishing ended
	phase     atomic.Int32
	drained   atomic.Int64 // records of this run read from the output so far

	// win is the current sampling interval's figures, fed by the poller
	// and taken by the sampler.
	winMu      sync.Mutex
	winDrained int64                   // guarded by winMu
	winHist    *hdrhistogram.Histogram // guarded by winMu; microseconds

	// Owned by the sampler goroutine until stop returns.
	samples []report.Sample
	events  []report.Event
	scraper *reconnectScraper

	stopOnce sync.Once
}

func newLoadRun(o loadOptions, gen load.GenOptions) *loadRun {
	r := &loadRun{
		o: o, gen: gen, runID: gen.RunID, finish: make(chan struct{}),
		winHist: hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 3),
		scraper: newReconnectScraper(o.metricsURL),
	}
	if o.verify != "" {
		r.v = load.NewVerifier(gen.RunID, gen.Count)
		// Invalid records are a function of the run id and seq: mark them
		// before the first observation.
		r.v.MarkInvalidFraction(gen.Invalid)
		r.tail = load.NewTail(o.verify)
	}
	return r
}

func (r *loadRun) startBackground(ctx context.Context, stdout, stderr io.Writer) {
	r.scraper.scrape(ctx) // the baseline: reconnects before the run are not marked
	if r.tail != nil {
		// Skip what the directory already holds: earlier runs' records,
		// possibly a lot of them, none of this run's.
		_, _ = r.tail.Poll(func([]byte) {})
	}
	r.start = time.Now()
	if r.tail != nil {
		r.wg.Go(r.follow)
	}
	d := newLoadDisplay(r, stdout, stderr)
	r.wg.Go(func() { r.sample(ctx, d) })
}

// stop ends the follower (after a last read of the output) and the sampler
// (after a last sample), and waits for them.
func (r *loadRun) stop() {
	r.stopOnce.Do(func() {
		close(r.finish)
		r.wg.Wait()
	})
}

// follow reads the drainer's output every pollEvery until finish, then once
// more.
func (r *loadRun) follow() {
	t := time.NewTicker(r.o.pollEvery)
	defer t.Stop()
	for {
		select {
		case <-r.finish:
			r.poll()
			return
		case <-t.C:
			r.poll()
		}
	}
}

// poll hands every new output line to the verifier and to the current
// interval's figures. A line counts as drained now: when it was read.
func (r *loadRun) poll() {
	now := time.Now()
	var n int64
	var lat []int64
	_, err := r.tail.Poll(func(line []byte) {
		r.v.Observe(line, now)
		h, err := load.ParseRecord(line)
		if err != nil || h.Run != r.runID {
			return
		}
		n++
		lat = append(lat, max(1, now.UnixNano()/1e3-h.TS/1e3))
	})
	_ = err // a file rotated away under us is read again at the next poll
	if n == 0 {
		return
	}
	r.drained.Add(n)
	r.winMu.Lock()
	r.winDrained += n
	for _, us := range lat {
		_ = r.winHist.RecordValue(min(us, r.winHist.HighestTrackableValue()))
	}
	r.winMu.Unlock()
}

// sample takes a sample every sampleEvery and refreshes the display, until
// finish; then a last (partial) sample.
func (r *loadRun) sample(ctx context.Context, d *loadDisplay) {
	t := time.NewTicker(min(200*time.Millisecond, r.o.sampleEvery))
	defer t.Stop()
	next := r.start.Add(r.o.sampleEvery)
	var lastPub int64
	// prevHist holds the previous sample's latencies, so that a last
	// sample much shorter than an interval (publishing ended just after
	// a sample) can be merged into it rather than charted as a spike.
	prevHist := hdrhistogram.New(1, r.winHist.HighestTrackableValue(), 3)
	take := func(now time.Time, last bool) {
		pub := r.published.Load()
		at := now.Sub(r.start)
		merge := last && len(r.samples) > 0 && at-r.samples[len(r.samples)-1].At < r.o.sampleEvery/4
		r.winMu.Lock()
		s := report.Sample{At: at, Published: pub - lastPub, Drained: r.winDrained}
		h := r.winHist
		if merge {
			prev := r.samples[len(r.samples)-1]
			r.samples = r.samples[:len(r.samples)-1]
			s.Published += prev.Published
			s.Drained += prev.Drained
			prevHist.Merge(h)
			h = prevHist
		}
		s.Latency = h.TotalCount()
		if s.Latency > 0 {
			s.P50 = time.Duration(h.ValueAtQuantile(50)) * time.Microsecond
			s.P99 = time.Duration(h.ValueAtQuantile(99)) * time.Microsecond
		}
		r.winDrained = 0
		r.winHist, prevHist = prevHist, r.winHist
		r.winHist.Reset()
		r.winMu.Unlock()
		lastPub = pub
		r.samples = append(r.samples, s)
		if label := r.scraper.scrape(ctx); label != "" {
			r.events = append(r.events, report.Event{At: s.At, Label: label})
		}
	}
	for {
		select {
		case <-r.finish:
			take(time.Now(), true)
			d.done()
			return
		case now := <-t.C:
			if !now.Before(next) {
				take(now, false)
				next = next.Add(r.o.sampleEvery)
			}
			d.update(now)
		}
	}
}

// waitForStragglers waits, at most wait, until every valid published record
// has been read back (or ctx is done).
func (r *loadRun) waitForStragglers(ctx context.Context, wait time.Duration) {
	deadline := time.Now().Add(wait)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for r.v.Report().Lost > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// loadDisplay shows progress: a progress bar on a terminal, else a plain
// line every 5 s, or nothing with --json (unless stderr is a terminal, where
// the bar goes then).
type loadDisplay struct {
	r        *loadRun
	bar      *progressbar.ProgressBar // nil without a terminal
	lines    io.Writer                // plain lines; nil = none
	lastLine time.Time
	lastN    int64
	lastAt   time.Time
	rate     float64
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

func newLoadDisplay(r *loadRun, stdout, stderr io.Writer) *loadDisplay {
	d := &loadDisplay{r: r, lastAt: r.start, lastLine: r.start}
	var barTo io.Writer
	switch {
	case !r.o.json && isTerminal(stdout):
		barTo = stdout
	case r.o.json && isTerminal(stderr):
		barTo = stderr
	case !r.o.json:
		d.lines = stdout
	}
	if barTo == nil {
		return d
	}
	max := int64(-1) // a spinner when the end is unknown
	switch {
	case r.o.count > 0:
		max = r.o.count
	case r.gen.Duration > 0:
		max = int64(r.gen.Duration / (100 * time.Millisecond))
	}
	d.bar = progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(barTo),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionShowDescriptionAtLineEnd(),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetDescription("connecting"),
	)
	return d
}

func (d *loadDisplay) update(now time.Time) {
	r := d.r
	pub := r.published.Load()
	if dt := now.Sub(d.lastAt); dt >= time.Second {
		d.rate = float64(pub-d.lastN) / dt.Seconds()
		d.lastN, d.lastAt = pub, now
	}
	desc := fmt.Sprintf("published %d  %.0f rec/s", pub, d.rate)
	if r.v != nil {
		desc += fmt.Sprintf("  drained %d", r.drained.Load())
	}
	if r.phase.Load() == phaseWaiting {
		desc = fmt.Sprintf("published %d; waiting for stragglers", pub)
		if r.v != nil {
			desc += fmt.Sprintf(": drained %d of %d", r.drained.Load(), r.expected.Load())
		}
	}
	if d.bar != nil {
		d.bar.Describe(desc)
		switch {
		case r.phase.Load() == phaseWaiting && d.bar.GetMax64() > 0:
			_ = d.bar.Set64(d.bar.GetMax64())
		case r.o.count > 0:
			_ = d.bar.Set64(min(pub, r.o.count))
		case r.gen.Duration > 0:
			_ = d.bar.Set64(min(int64(now.Sub(r.start)/(100*time.Millisecond)), d.bar.GetMax64()))
		default:
			_ = d.bar.Add64(1)
		}
		return
	}
	if d.lines != nil && now.Sub(d.lastLine) >= 5*time.Second {
		d.lastLine = now
		fmt.Fprintf(d.lines, "%5.0fs  %s\n", now.Sub(r.start).Seconds(), desc)
	}
}

func (d *loadDisplay) done() {
	if d.bar != nil {
		_ = d.bar.Finish()
		_ = d.bar.Clear()
	}
}

// writeLoadSummary writes the human-readable summary.
func writeLoadSummary(w io.Writer, o loadOptions, out loadOutput) {
	res := out.Generator
	fmt.Fprintf(w, "sluice load: run %s to %s on %s\n", res.RunID, out.Subject, out.URL)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{name}, args...)...)
	}
	fmt.Fprintln(tw, "\ngenerator\t")
	row("elapsed", "%s", res.Elapsed.Round(time.Millisecond))
	row("published", "%d", res.Published)
	row("invalid", "%d", res.Invalid)
	row("failed", "%d", res.Failed)
	row("messages", "%d", res.Messages)
	row("bytes", "%d  (%.1f MB)", res.Bytes, float64(res.Bytes)/1e6)
	row("retries", "%d", res.Retries)
	row("rate", "%.0f records/s  %.1f MB/s", out.RecordsPerSecond, float64(res.Bytes)/1e6/max(res.Elapsed.Seconds(), 1e-9))
	if res.LastError != "" {
		row("last error", "%s", res.LastError)
	}
	if out.Reconnects != nil {
		row("reconnects", "%d  (sink, from %s)", *out.Reconnects, o.metricsURL)
	}
	if out.Interrupted {
		row("interrupted", "yes: publishing stopped early")
	}
	_ = tw.Flush()
	if out.Verify != nil {
		fmt.Fprintf(w, "\nverification of %s\n", out.VerifyDir)
		_ = out.Verify.WriteTable(w)
	}
	if out.Report != "" {
		fmt.Fprintf(w, "\nreport written to %s\n", out.Report)
	}
	switch {
	case out.Verify == nil:
	case out.OK:
		fmt.Fprintf(w, "\nOK: all %d published records were drained\n", out.Verify.Received)
	case out.Verify.Lost > 0:
		fmt.Fprintf(w, "\nFAIL: %d of %d published records were not drained (first: %s)\n",
			out.Verify.Lost, out.Verify.Expected, strings.Join(out.Verify.LostIDs, ", "))
	default:
		fmt.Fprintf(w, "\nFAIL: duplicates %d, invalid leaked %d, malformed %d, out of range %d\n",
			out.Verify.Duplicates, out.Verify.InvalidLeaked, out.Verify.Malformed, out.Verify.OutOfRange)
	}
}

// writeLoadReport writes the HTML report.
func writeLoadReport(o loadOptions, out loadOutput, events []report.Event, metricsOK bool) error {
	res := out.Generator
	field := func(name, value string) report.Field { return report.Field{Name: name, Value: value} }
	fields := []report.Field{
		field("target", fmt.Sprintf("%s on %s", out.Subject, out.URL)),
		field("duration", out.elapsed.Round(time.Millisecond).String()),
		field("published", fmt.Sprintf("%d valid, %d invalid, %d failed, in %d messages", res.Published, res.Invalid, res.Failed, res.Messages)),
		field("publish rate", fmt.Sprintf("%.0f records/s, %.1f MB/s", out.RecordsPerSecond, float64(res.Bytes)/1e6/max(res.Elapsed.Seconds(), 1e-9))),
	}
	if v := out.Verify; v != nil {
		l := v.Latency
		fields = append(fields,
			field("received", strconv.FormatInt(v.Received, 10)+" of "+strconv.FormatInt(v.Expected, 10)),
			field("lost", idList(v.Lost, v.LostIDs)),
			field("duplicates", idList(v.Duplicates, v.DuplicateIDs)),
			field("out of order (per key)", strconv.FormatInt(v.OutOfOrder, 10)),
			field("latency", fmt.Sprintf("p50 %v · p90 %v · p99 %v · p99.9 %v · max %v", l.P50, l.P90, l.P99, l.P999, l.Max)),
			field("result", map[bool]string{true: "OK", false: "FAIL"}[out.OK]),
		)
	}
	if out.Reconnects != nil {
		fields = append(fields, field("reconnects", strconv.FormatInt(*out.Reconnects, 10)))
	}
	f, err := os.Create(o.report)
	if err != nil {
		return fmt.Errorf("load: report: %w", err)
	}
	bw := bufio.NewWriter(f)
	err = report.Write(bw, report.Run{
		RunID:    res.RunID,
		Started:  out.start,
		Summary:  fields,
		Samples:  out.Samples,
		Interval: o.sampleEvery,
		Events:   events,
		Metrics:  metricsOK,
		Verified: out.Verify != nil,
	})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("load: report %s: %w", o.report, err)
	}
	return nil
}

func idList(n int64, ids []string) string {
	if n == 0 {
		return "0"
	}
	s := strconv.FormatInt(n, 10) + " (" + strings.Join(ids, ", ")
	if n > int64(len(ids)) {
		s += ", …"
	}
	return s + ")"
}

// reconnectScraper reads sluice_sink_reconnects_total from sluice's
// /metrics and reports what changed since the previous read. It tolerates
// the endpoint being absent: then it reports nothing.
type reconnectScraper struct {
	url    string
	client *http.Client
	read   bool               // the endpoint was read at least once
	last   map[string]float64 // by reason, at the last successful read
	count  int64              // reconnects seen since the first read
}

// reconnectsMetric is the sink's counter, labelled by reason.
const reconnectsMetric = "sluice_sink_reconnects_total"

func newReconnectScraper(url string) *reconnectScraper {
	return &reconnectScraper{url: url, client: &http.Client{Timeout: 800 * time.Millisecond}}
}

// scrape reads the counters and returns a label for what increased since
// the last successful read ("reconnect: eof ×2, write_error"), or "".
func (s *reconnectScraper) scrape(ctx context.Context) string {
	if s.url == "" {
		return ""
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return ""
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	cur, err := parseReconnects(resp.Body)
	if err != nil {
		return ""
	}
	prev := s.last
	s.last = cur
	if !s.read {
		s.read = true
		return ""
	}
	var parts []string
	for _, reason := range slices.Sorted(maps.Keys(cur)) {
		d := cur[reason] - prev[reason]
		if d < 0 { // sluice restarted: its counters did too
			d = cur[reason]
		}
		s.count += int64(d)
		switch {
		case d >= 2:
			parts = append(parts, fmt.Sprintf("%s ×%.0f", reason, d))
		case d > 0:
			parts = append(parts, reason)
		}
	}
	if parts == nil {
		return ""
	}
	return "reconnect: " + strings.Join(parts, ", ")
}

// ok reports whether the endpoint was read at least once.
func (s *reconnectScraper) ok() bool { return s.read }

// total returns the reconnects counted during the run, and whether the
// endpoint was ever read.
func (s *reconnectScraper) total() (int64, bool) { return s.count, s.read }

// parseReconnects reads the Prometheus text format and returns
// sluice_sink_reconnects_total by reason label. A body without the metric
// (no reconnect reason seen yet) yields an empty map.
func parseReconnects(body io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, reconnectsMetric)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		reason := ""
		if rest[0] == '{' {
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				continue
			}
			labels := rest[1:end]
			rest = rest[end+1:]
			if i := strings.Index(labels, `reason="`); i >= 0 {
				v := labels[i+len(`reason="`):]
				if j := strings.IndexByte(v, '"'); j >= 0 {
					reason = v[:j]
				}
			}
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		if reason == "" {
			reason = "unknown"
		}
		out[reason] += v
	}
	return out, sc.Err()
}
