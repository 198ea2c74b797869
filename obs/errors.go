package obs

import "errors"

// ErrFlightDisabled is returned by (*FlightRecorder).DumpNow on a nil
// recorder: the process runs without a flight recorder.
var ErrFlightDisabled = errors.New("flight recorder is not enabled in this process")

// ErrFlightClosed is returned by DumpNow once Close has begun.
var ErrFlightClosed = errors.New("flight recorder is closed")

// errSuppressed is the internal result of a triggered dump skipped by the
// rate limit (MinInterval).
var errSuppressed = errors.New("flight recorder dump suppressed by the rate limit")
