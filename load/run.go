package load

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/report"
)

// Limits of a verified run without a Count: the verifier keeps a bit per
// record.
const (
	VerifyMaxRecords = 200_000_000 // ~25 MB per bitset
	verifyFastRate   = 5_000_000   // records/s assumed for an unlimited Rate
)

// RunOptions configures Run: a generator run against a NATS server, with
// the drainer's output followed and verified, progress shown, and an HTML
// report.
type RunOptions struct {
	URL string // NATS server URL(s), comma-separated
	// Token is presented to the server when not empty (the embedded
	// server's queue.auth token); credentials in URL take precedence.
	Token string
	Gen   GenOptions // what to publish; Gen.Count is raised to the verifier's capacity with Verify and no Count

	Verify    string        // the drainer's output directory; "" = no verification
	Wait      time.Duration // with Verify: how long after publishing to wait for missing records
	FailOnDup bool          // with Verify: duplicates fail the run too
	Report    string        // HTML report path; "" = none
	// MetricsURL is sluice's /metrics, read every sample for the sink's
	// reconnects; "" = not read.
	MetricsURL string

	// Progress receives the progress display: a progress bar when it is a
	// terminal, else a plain line every 5 s. Nil: no progress.
	Progress io.Writer
	// BarOnly shows progress only as a bar: nothing when Progress is not a
	// terminal (for a caller whose stdout carries JSON).
	BarOnly bool

	// PollEvery is how often the drainer's output is read during the run
	// (the latency resolution); 0 = 50ms. SampleEvery is the width of one
	// report sample; 0 = 1s.
	PollEvery   time.Duration
	SampleEvery time.Duration
}

// withDefaults returns o with its zero fields defaulted and a random run id
// drawn when none is set.
func (o RunOptions) withDefaults() RunOptions {
	if o.Gen.RunID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		o.Gen.RunID = "l" + hex.EncodeToString(b[:])
	}
	if o.PollEvery <= 0 {
		o.PollEvery = 50 * time.Millisecond
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = time.Second
	}
	return o
}

// Validate checks o. Its errors wrap ErrBadOptions.
func (o RunOptions) Validate() error {
	if err := o.Gen.WithDefaults().Validate(); err != nil {
		return err
	}
	if o.Wait < 0 {
		return fmt.Errorf("%w: wait %v < 0", ErrBadOptions, o.Wait)
	}
	if o.Verify != "" {
		if fi, err := os.Stat(o.Verify); err != nil || !fi.IsDir() {
			return fmt.Errorf("%w: verify %s: not a directory", ErrBadOptions, o.Verify)
		}
	}
	return nil
}

// VerifyCapacity returns how many records a verified run of gen (with its
// defaults applied) is sized for: the most it can publish.
func VerifyCapacity(gen GenOptions) int64 {
	if gen.Count > 0 {
		return gen.Count
	}
	if gen.Duration <= 0 {
		return VerifyMaxRecords
	}
	r := float64(verifyFastRate)
	slack := 0.0
	if gen.Rate > 0 {
		r = gen.Rate
		slack = float64(gen.Burst + gen.PerMessage*gen.Publishers)
	}
	return int64(min(float64(VerifyMaxRecords), math.Ceil(r*gen.Duration.Seconds()*1.05+slack)+1))
}

// Event is a point of the run worth marking: a change of the sink's
// reconnect counters.
type Event struct {
	At    float64 `json:"at_s"` // seconds since the run started
	Label string  `json:"label"`
}

// Output is what Run measured; its JSON form is what sluice load --json
// prints.
type Output struct {
	// URL and MetricsURL are RunOptions' with any password or token
	// replaced by xxxxx (obs.RedactURL): Output is printed and reported.
	URL              string  `json:"url"`
	Subject          string  `json:"subject"`
	Generator        Result  `json:"generator"`
	RecordsPerSecond float64 `json:"records_per_second"`
	Verify           *Report `json:"verify,omitempty"` // nil without RunOptions.Verify
	VerifyDir        string  `json:"verify_dir,omitempty"`
	Reconnects       *int64  `json:"reconnects"` // null when the metrics could not be read
	Events           []Event `json:"events,omitempty"`
	Report           string  `json:"report,omitempty"` // the HTML report written
	Interrupted      bool    `json:"interrupted,omitempty"`
	OK               bool    `json:"ok"`

	Samples    []report.Sample `json:"-"`
	Started    time.Time       `json:"-"` // wall-clock start of publishing
	Elapsed    time.Duration   `json:"-"` // publish start to the end of verification
	MetricsURL string          `json:"-"` // where Reconnects were read
}

// Run connects to the NATS server at o.URL, publishes with Generate and,
// with o.Verify, follows the drainer's output and waits up to o.Wait for
// stragglers; it shows progress, samples the run and writes the HTML
// report (o.Report). The final figures of the verification (lost,
// duplicated) count what the drainer committed (see Follower).
//
// The error is ErrBadOptions-wrapped for bad options, wraps ErrNoStream when
// no stream captures the subject, and reports a connection or generator
// failure otherwise; a run that publishes and fails verification returns a
// nil error and Output.OK false.
func Run(ctx context.Context, o RunOptions) (Output, error) {
	if err := o.Validate(); err != nil {
		return Output{}, err
	}
	o = o.withDefaults()
	gen := o.Gen.WithDefaults()
	asked := o // the progress bar's end is the count asked for
	if o.Verify != "" {
		o.Gen.Count = VerifyCapacity(gen)
		gen.Count = o.Gen.Count
	}

	nopts := []nats.Option{nats.Name("sluice-load"), nats.Timeout(5 * time.Second)}
	if o.Token != "" {
		nopts = append(nopts, nats.Token(o.Token))
	}
	nc, err := nats.Connect(o.URL, nopts...)
	if err != nil {
		return Output{}, fmt.Errorf("load: connect to %s: %w", obs.RedactURL(o.URL), obs.RedactError(err))
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(max(4000, 2*gen.Publishers*gen.MaxPending)))
	if err != nil {
		return Output{}, fmt.Errorf("load: %w", err)
	}

	r, err := newRun(o, asked)
	if err != nil {
		return Output{}, err
	}
	r.start(ctx)
	o.Gen.Acked = &r.published
	res, genErr := Generate(ctx, js, o.Gen, nil)
	out := Output{URL: obs.RedactURL(o.URL), Subject: gen.Subject, Generator: res, RecordsPerSecond: res.RecordsPerSecond(),
		Started: r.started, MetricsURL: obs.RedactURL(o.MetricsURL)}
	switch {
	case genErr == nil:
	case errors.Is(genErr, context.Canceled) || errors.Is(genErr, context.DeadlineExceeded):
		out.Interrupted = true
	default:
		r.stop()
		return Output{}, genErr
	}
	r.expected.Store(res.Published)
	r.waiting.Store(true)

	out.OK = true
	if r.follow != nil {
		live := r.follow.Live()
		live.Shrink(res.MaxSeq)
		if err := live.Expect(res); err != nil {
			r.stop()
			return Output{}, err
		}
		rep, err := r.follow.Wait(ctx, res, o.Wait)
		if err != nil {
			r.stop()
			return Output{}, err
		}
		out.Verify, out.VerifyDir = &rep, o.Verify
		out.OK = rep.OK(o.FailOnDup)
	}
	r.stop()
	out.Elapsed = time.Since(r.started)
	if n, ok := r.scraper.total(); ok {
		out.Reconnects = &n
	}
	for _, e := range r.events {
		out.Events = append(out.Events, Event{At: e.At.Seconds(), Label: e.Label})
	}
	out.Samples = r.sampler.Samples()
	if o.Report != "" {
		if err := out.WriteHTML(o.Report, o.SampleEvery, r.events, r.scraper.ok()); err != nil {
			return Output{}, err
		}
		out.Report = o.Report
	}
	return out, nil
}

// run is the state of one Run besides the generator: the follower of the
// drainer's output and the sampling and display loop. Both goroutines are
// started by start and stopped by stop.
type run struct {
	o       RunOptions
	asked   RunOptions // o as the caller gave it, for the display
	follow  *Follower  // nil without Verify; Poll owned by the follow goroutine
	sampler *report.Sampler
	display *display
	started time.Time
	finish  chan struct{} // closed by stop
	wg      sync.WaitGroup

	published atomic.Int64 // records acknowledged so far (GenOptions.Acked)
	expected  atomic.Int64 // valid records published, once publishing ended
	waiting   atomic.Bool  // publishing ended: waiting for stragglers

	// Owned by the sampling goroutine until stop returns.
	events  []report.Event
	scraper *reconnectScraper

	stopOnce sync.Once
}

func newRun(o, asked RunOptions) (*run, error) {
	r := &run{
		o: o, asked: asked, finish: make(chan struct{}),
		sampler: report.NewSampler(o.SampleEvery),
		scraper: newReconnectScraper(o.MetricsURL),
	}
	if o.Verify != "" {
		v := NewVerifier(o.Gen.RunID, o.Gen.Count)
		// Invalid records are a function of the run id and seq: mark them
		// before the first observation.
		v.MarkInvalidFraction(o.Gen.Invalid)
		// What the directory holds now is skipped: earlier runs' records,
		// possibly a lot of them, none of this run's.
		f, err := NewFollower(o.Verify, v)
		if err != nil {
			return nil, err
		}
		r.follow = f
	}
	return r, nil
}

func (r *run) start(ctx context.Context) {
	r.scraper.scrape(ctx) // the baseline: reconnects before the run are not marked
	r.started = time.Now()
	r.display = newDisplay(r.asked, r.started)
	if r.follow != nil {
		r.wg.Go(r.followLoop)
	}
	r.wg.Go(func() { r.sampleLoop(ctx) })
}

// stop ends the follower (after a last read of the output) and the sampler
// (after a last sample), and waits for them.
func (r *run) stop() {
	r.stopOnce.Do(func() {
		close(r.finish)
		r.wg.Wait()
	})
}

// followLoop reads the drainer's output every PollEvery until finish, then
// once more.
func (r *run) followLoop() {
	t := time.NewTicker(r.o.PollEvery)
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

// poll hands every new output line to the verifier and this run's records
// to the sampler. A line counts as drained now: when it was read.
func (r *run) poll() {
	now := time.Now()
	var lat []time.Duration
	// An error (a file rotated away under us) is read again at the next poll.
	_, _ = r.follow.Poll(now, func(h Header, drained time.Time) {
		lat = append(lat, max(time.Microsecond, drained.Sub(time.Unix(0, h.TS))))
	})
	r.sampler.Observe(lat...)
}

// sampleLoop takes a sample every SampleEvery and refreshes the display,
// until finish; then a last (partial) sample.
func (r *run) sampleLoop(ctx context.Context) {
	t := time.NewTicker(min(200*time.Millisecond, r.o.SampleEvery))
	defer t.Stop()
	next := r.started.Add(r.o.SampleEvery)
	take := func(now time.Time, last bool) {
		s := r.sampler.Take(now.Sub(r.started), r.published.Load(), last)
		if label := r.scraper.scrape(ctx); label != "" {
			r.events = append(r.events, report.Event{At: s.At, Label: label})
		}
	}
	for {
		select {
		case <-r.finish:
			take(time.Now(), true)
			r.display.done()
			return
		case now := <-t.C:
			if !now.Before(next) {
				take(now, false)
				next = next.Add(r.o.SampleEvery)
			}
			r.display.update(now, r.figures())
		}
	}
}

// figures reads the run's counters for a progress line: the drained count
// first, then the published one, so that a line never shows more drained
// than published (see Figures).
func (r *run) figures() Figures {
	f := Figures{Verify: r.follow != nil, Waiting: r.waiting.Load(), Expected: r.expected.Load()}
	if r.follow != nil {
		f.Drained = r.follow.Live().Received()
	}
	f.Published = max(r.published.Load(), f.Drained)
	return f
}
