// Package conformance checks a drainer of the acked framing
// (docs/protocol.md) from the outside, as sluice's sink would use it and as
// a broken or hostile peer would: the handshake variants, every malformed
// frame of the test vectors, frame order and limits, acknowledgement,
// deduplication of re-sent records, several connections at once, a slow
// reader, and, when the suite starts the drainer itself, crash recovery
// (SIGKILL between writes, restart, nothing acknowledged lost, nothing
// duplicated).
//
// The drainer under test is reached on its Unix socket. Checks of what it
// wrote read Options.Out: a file or a directory of files in which the
// drainer writes each record's payload on a line of its own (a prefix
// before the payload, such as sluice drain's identity, is fine). Without
// Out those checks are skipped, and the table says so.
//
// Every record the suite sends is a small JSON object naming the run,
// {"conformance":"<run id>","n":<n>}, from stream
// "conformance-<run id>" with the run's start as its epoch, so a run never
// collides with what the drainer holds from earlier runs or from sluice.
package conformance

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Status is the outcome of one check.
type Status string

// The outcomes.
const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	Skip Status = "SKIP"
)

// Result is one check's outcome.
type Result struct {
	Name   string
	Status Status
	Detail string // why it failed or was skipped; what it saw when it passed
	Took   time.Duration
}

// Options configures a run. Socket is required.
type Options struct {
	// Socket is the drainer's Unix socket.
	Socket string
	// Exec, when set, is a shell command (run with /bin/sh -c) that starts
	// the drainer listening on Socket. The suite starts it, waits for the
	// socket, kills it with SIGKILL for the crash checks and starts it
	// again; it stops it (SIGTERM) at the end. Empty: the drainer is
	// already running, and the crash checks are skipped.
	Exec string
	// Out is where the drainer writes records, one per line: a file, or a
	// directory whose regular files (at any depth) are read. Empty: checks
	// of the output are skipped.
	Out string
	// Timeout bounds each wait for the drainer (an answer, an ACK, the
	// socket after a start). Zero: 10s.
	Timeout time.Duration
	// CrashRounds is how many SIGKILL rounds each crash check runs. Zero: 3.
	CrashRounds int
	// Log receives the drainer's output (with Exec) and progress lines.
	// Nil: discarded.
	Log io.Writer
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.CrashRounds <= 0 {
		o.CrashRounds = 3
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return o
}

// Failed reports whether any result is a failure.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

// Table renders results as the suite prints them.
func Table(rs []Result) string {
	var b strings.Builder
	w := 0
	for _, r := range rs {
		w = max(w, len(r.Name))
	}
	pass, fail, skip := 0, 0, 0
	for _, r := range rs {
		fmt.Fprintf(&b, "%-*s  %-4s  %7s  %s\n", w, r.Name, r.Status, r.Took.Round(time.Millisecond), r.Detail)
		switch r.Status {
		case Pass:
			pass++
		case Fail:
			fail++
		case Skip:
			skip++
		}
	}
	fmt.Fprintf(&b, "%d passed, %d failed, %d skipped\n", pass, fail, skip)
	return b.String()
}

// Run runs every check in order and returns their results. It returns an
// error only when the run itself cannot go on (the drainer cannot be
// started or reached at all); a misbehaving drainer is a failed check.
func Run(ctx context.Context, opts Options) ([]Result, error) {
	if opts.Socket == "" {
		return nil, fmt.Errorf("conformance: no socket: give the drainer's Unix socket path (--socket)")
	}
	r := newRun(opts.withDefaults())
	if r.opts.Exec != "" {
		if err := r.startDrainer(ctx); err != nil {
			return nil, err
		}
		defer r.stopDrainer()
	}
	if err := r.reachable(ctx); err != nil {
		return nil, err
	}
	var out []Result
	for _, c := range checks {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		t0 := time.Now()
		res := Result{Name: c.name, Status: Pass}
		detail, err := c.fn(ctx, r)
		switch {
		case err == nil:
			res.Detail = detail
		case isSkip(err):
			res.Status, res.Detail = Skip, err.Error()
		default:
			res.Status, res.Detail = Fail, err.Error()
		}
		res.Took = time.Since(t0)
		fmt.Fprintf(r.opts.Log, "conformance: %s %s %s\n", res.Status, res.Name, res.Detail)
		out = append(out, res)
	}
	return out, nil
}

// skipError marks a check that cannot run with the given options.
type skipError struct{ why string }

func (e skipError) Error() string { return e.why }

func isSkip(err error) bool { _, ok := err.(skipError); return ok }

// run is the state of one suite run: the records it sent and which of them
// the drainer acknowledged.
type run struct {
	opts  Options
	id    string
	epoch uint64

	mu     sync.Mutex
	seq    uint64       // guarded by mu; the last message sequence handed out
	n      int          // guarded by mu; the last record number handed out
	acked  map[int]bool // guarded by mu; records acknowledged at least once
	sent   map[int]bool // guarded by mu; records sent at least once
	frame  uint64       // guarded by mu; frame ids, unique over the run
	drain  *drainerProc // with Exec
	starts int          // guarded by mu; drainer starts
}

func newRun(opts Options) *run {
	now := time.Now()
	return &run{opts: opts, id: fmt.Sprintf("%x", now.UnixNano()), epoch: uint64(now.UnixNano()),
		acked: map[int]bool{}, sent: map[int]bool{}}
}
