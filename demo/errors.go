package demo

import "errors"

// ErrNotDelivered is returned by Run, after it printed its summary, when a
// published valid record was not drained, or (acked framing) was drained
// more than once.
var ErrNotDelivered = errors.New("demo: records not delivered as promised")

// ErrStopped is returned when a drainer child is to start after the demo
// began to stop its drainer.
var ErrStopped = errors.New("demo: the drainer is stopped")

// ErrBadOptions is wrapped by the error Run returns for Options that cannot
// run.
var ErrBadOptions = errors.New("demo: bad options")
