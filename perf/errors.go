package perf

import "errors"

// ErrNotAvailable is returned by EndToEnd when sluice run or sluice drain
// refuses the requested framing at start (for example a build in which the
// acked framing is not implemented yet). The bench reports the case as n/a
// and carries on.
var ErrNotAvailable = errors.New("perf: framing not available in this sluice")

// ErrIncomplete is returned when a measured run did not move every record:
// a child exited early, the output holds the wrong number of lines, or the
// run passed its time limit.
var ErrIncomplete = errors.New("perf: run incomplete")

// ErrBadOptions is returned by Run for options it cannot use.
var ErrBadOptions = errors.New("perf: bad options")
