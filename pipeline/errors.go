package pipeline

import "errors"

// ErrShutdown is passed to done callbacks and reported for chunks abandoned
// because graceful shutdown ran out of time; their messages are nak'ed for
// redelivery.
var ErrShutdown = errors.New("pipeline: shutdown deadline passed; in-flight work left for redelivery")

// ErrAlreadyRunning is returned by Run when called twice.
var ErrAlreadyRunning = errors.New("pipeline: Run called twice")
