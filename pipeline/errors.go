package pipeline

import "errors"

// ErrAlreadyRunning is returned by Run when called twice.
var ErrAlreadyRunning = errors.New("pipeline: Run called twice")

// ErrTooLarge is wrapped by the error Sink.Send returns when the records of
// one queue message cannot fit in one frame under the drainer's limits; the
// pipeline then dead-letters that message whole instead of retrying it,
// since retrying cannot help.
var ErrTooLarge = errors.New("pipeline: a queue message's records do not fit in one frame")
