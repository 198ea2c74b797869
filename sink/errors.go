package sink

import "errors"

// ErrClosed is returned by Send once Close has been called, including to
// Sends that were waiting for a connection or writing when Close ran. The
// frame counts as not delivered.
var ErrClosed = errors.New("sink: writer is closed; the frame was not delivered")

// errLeaseBroken is the internal error for a write skipped because another
// writer already found the lease's connection broken; the frame is retried
// on the next connection.
var errLeaseBroken = errors.New("sink: connection already broken")
