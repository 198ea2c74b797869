package load

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Figures are the counters one progress line shows, read at one moment.
//
// Drained is read before Published, and Published is at least Drained: a
// record seen in the drainer's output was stored by the queue, even when the
// publisher has not yet seen the queue's acknowledgement. So a line never
// shows more records drained than published.
type Figures struct {
	Published int64 // records the queue stored: acknowledged, or already drained
	Drained   int64 // distinct expected records of the run seen in the output (with Verify)
	Expected  int64 // valid records published, once publishing ended
	Verify    bool  // Drained and Expected are known
	Waiting   bool  // publishing ended; waiting for stragglers
}

// display shows progress: a progress bar on a terminal, else a plain line
// every 5 s, or nothing. It is owned by the sampling goroutine.
type display struct {
	start    time.Time
	count    int64                    // records asked for; 0 = bounded by duration or unbounded
	duration time.Duration            // 0 = bounded by count or unbounded
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

// newDisplay returns the display for o, which must be the options as the
// caller gave them (Gen.Count not raised to the verifier's capacity).
func newDisplay(o RunOptions, start time.Time) *display {
	d := &display{start: start, lastAt: start, lastLine: start, count: o.Gen.Count, duration: o.Gen.Duration}
	if o.Progress == nil {
		return d
	}
	if !isTerminal(o.Progress) {
		if !o.BarOnly {
			d.lines = o.Progress
		}
		return d
	}
	max := int64(-1) // a spinner when the end is unknown
	switch {
	case d.count > 0:
		max = d.count
	case d.duration > 0:
		max = int64(d.duration / (100 * time.Millisecond))
	}
	d.bar = progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(o.Progress),
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

// describe returns the progress text for f at now.
func (d *display) describe(now time.Time, f Figures) string {
	if dt := now.Sub(d.lastAt); dt >= time.Second {
		d.rate = float64(f.Published-d.lastN) / dt.Seconds()
		d.lastN, d.lastAt = f.Published, now
	}
	if f.Waiting {
		desc := fmt.Sprintf("published %d; waiting for stragglers", f.Published)
		if f.Verify {
			desc += fmt.Sprintf(": drained %d of %d", f.Drained, f.Expected)
		}
		return desc
	}
	desc := fmt.Sprintf("published %d  %.0f rec/s", f.Published, d.rate)
	if f.Verify {
		desc += fmt.Sprintf("  drained %d", f.Drained)
	}
	return desc
}

func (d *display) update(now time.Time, f Figures) {
	desc := d.describe(now, f)
	if d.bar != nil {
		d.bar.Describe(desc)
		switch {
		case f.Waiting && d.bar.GetMax64() > 0:
			_ = d.bar.Set64(d.bar.GetMax64())
		case d.count > 0:
			_ = d.bar.Set64(min(f.Published, d.count))
		case d.duration > 0:
			_ = d.bar.Set64(min(int64(now.Sub(d.start)/(100*time.Millisecond)), d.bar.GetMax64()))
		default:
			_ = d.bar.Add64(1)
		}
		return
	}
	if d.lines != nil && now.Sub(d.lastLine) >= 5*time.Second {
		d.lastLine = now
		fmt.Fprintf(d.lines, "%5.0fs  %s\n", now.Sub(d.start).Seconds(), desc)
	}
}

func (d *display) done() {
	if d.bar != nil {
		_ = d.bar.Finish()
		_ = d.bar.Clear()
	}
}
