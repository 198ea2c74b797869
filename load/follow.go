package load

import (
	"context"
	"fmt"
	"time"

	"github.com/sluice-dev/sluice/ledger"
)

// Follower follows a drainer's output directory during a run, in two ways.
//
// Poll reads it live, for progress and latency: every complete line as soon
// as it is in a file. That includes lines an acked drainer wrote but had not
// committed when it crashed, which its restart cuts off again, so what Poll
// sees is never the final count.
//
// Committed is the final count: it reads only what the drainer committed
// (ledger.ReadCommitted honours the dedup journal's commit point), so a record the
// drainer did not commit is lost, whatever a live read saw.
//
// What the directory held when the Follower was made (earlier runs) is
// skipped by both. Poll must be called from one goroutine at a time;
// Committed, Wait and Live may be called from any goroutine, concurrently
// with Poll.
type Follower struct {
	dir  string
	live *Verifier // safe for concurrent use
	tail *Tail     // owned by the goroutine calling Poll
	skip int64     // committed lines in dir before the run; immutable
}

// NewFollower returns a Follower of dir that hands every line it reads live
// to live (a Verifier of the run, with its invalid records marked). It reads
// dir once to the end, so that what dir holds now is skipped.
func NewFollower(dir string, live *Verifier) (*Follower, error) {
	f := &Follower{dir: dir, live: live, tail: NewTail(dir)}
	if _, err := f.tail.Poll(func([]byte) {}); err != nil {
		return nil, fmt.Errorf("load: follow %s: %w", dir, err)
	}
	if err := ledger.ReadCommitted(dir, func([]byte) error { f.skip++; return nil }); err != nil {
		return nil, fmt.Errorf("load: follow %s: %w", dir, err)
	}
	return f, nil
}

// Live returns the live verifier.
func (f *Follower) Live() *Verifier { return f.live }

// Poll hands every complete line appended since the last Poll to the live
// verifier, drained at now, and calls fn, if not nil, with the header of
// each one that is a record of the live verifier's run and the time it was
// drained: the drainer's receive stamp when the line has one (sluice drain
// --write-received), else now. It returns how many lines it read. An error
// (a file rotated away under it) leaves the lines not read for the next
// Poll.
func (f *Follower) Poll(now time.Time, fn func(h Header, drained time.Time)) (int, error) {
	return f.tail.Poll(func(line []byte) {
		f.live.Observe(line, now)
		if fn == nil {
			return
		}
		drained := now
		if ns, rest, ok := CutReceived(line); ok {
			line, drained = rest, time.Unix(0, ns)
		}
		if h, err := ParseRecord(line); err == nil && h.Run == f.live.run {
			fn(h, drained)
		}
	})
}

// Committed counts the records of run res that the drainer committed: a
// new Verifier expecting res's records observes every committed line of the
// directory (but those it held before the run). The report's latency is the
// live verifier's, measured when each record was first seen.
func (f *Follower) Committed(res Result) (Report, error) {
	v := NewVerifier(res.RunID, res.MaxSeq)
	if err := v.Expect(res); err != nil {
		return Report{}, err
	}
	now := time.Now()
	var n int64
	err := ledger.ReadCommitted(f.dir, func(line []byte) error {
		if n++; n > f.skip {
			v.Observe(line, now)
		}
		return nil
	})
	if err != nil {
		return Report{}, fmt.Errorf("load: read the drainer's output: %w", err)
	}
	rep := v.Report()
	rep.Latency = f.live.Report().Latency
	return rep, nil
}

// Wait waits, at most wait, until the drainer committed every expected
// record of res, and returns the final count (Committed). It checks the
// committed output only when the live reads (Poll, which another goroutine
// must keep calling) have seen every expected record, so the live verifier
// must know the run's result first (Shrink to res.MaxSeq, Expect(res)). It
// returns early when ctx is done, with the count at that moment.
func (f *Follower) Wait(ctx context.Context, res Result, wait time.Duration) (Report, error) {
	deadline := time.Now().Add(wait)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for time.Now().Before(deadline) {
		if f.live.Report().Lost == 0 {
			rep, err := f.Committed(res)
			if err != nil || rep.Lost == 0 {
				return rep, err
			}
		}
		select {
		case <-ctx.Done():
			return f.Committed(res)
		case <-t.C:
		}
	}
	return f.Committed(res)
}
