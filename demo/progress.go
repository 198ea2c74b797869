package demo

import (
	"fmt"
	"io"
	"time"

	"github.com/sluice-dev/sluice/load"
)

// progress makes the demo's live progress lines. It is owned by the
// progress goroutine.
type progress struct {
	drained    func() int64 // distinct valid records of the run seen in the drainer's output
	published  func() int64 // records the queue acknowledged (the generator's live counter)
	reconnects func() int64 // the sink's reconnects (its metric)

	start       time.Time
	lastDrained int64
	lastAt      time.Time
}

// line reads the counters and formats the progress line for now. It reads
// the drained count first and the published one after, both current, and
// shows as published at least what was drained: a drained record was stored
// by the queue even when the producer has not yet seen the queue's
// acknowledgement. So drained ≤ published holds in every line, and each
// figure is true when the line is printed.
func (p *progress) line(now time.Time) string {
	d := p.drained()
	pub := max(p.published(), d)
	rc := p.reconnects()
	var rate float64
	if dt := now.Sub(p.lastAt); dt > 0 {
		rate = float64(d-p.lastDrained) / dt.Seconds()
	}
	p.lastDrained, p.lastAt = d, now
	return fmt.Sprintf("%5.0fs  published %8d  drained %8d  reconnects %3d  rate %7.0f rec/s\n",
		now.Sub(p.start).Seconds(), pub, d, rc, rate)
}

// runProgress reads the drainer's output every 50 ms and prints a progress
// line every second, until done is closed; then it reads the output once
// more.
func runProgress(out io.Writer, follow *load.Follower, p *progress, done <-chan struct{}) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			_, _ = follow.Poll(time.Now(), nil)
			return
		case now := <-tick.C:
			// An error (a file rotated away under us) is read again at the
			// next tick.
			_, _ = follow.Poll(now, nil)
			if now.Sub(p.lastAt) < time.Second {
				continue
			}
			io.WriteString(out, p.line(now))
		}
	}
}
