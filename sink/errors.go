package sink

import (
	"errors"
	"fmt"

	"github.com/sluice-dev/sluice/pipeline"
)

// ErrClosed is returned by Send once Close has been called, including to
// Sends that were waiting for a connection or writing when Close ran. The
// frame counts as not delivered.
var ErrClosed = errors.New("sink: writer is closed; the frame was not delivered")

// errLeaseBroken is the internal error for a write skipped because another
// writer already found the lease's connection broken; the frame is retried
// on the next connection.
var errLeaseBroken = errors.New("sink: connection already broken")

// ErrMessageTooLarge is returned by Send (acked framing) when the records of
// one queue message do not fit in one DATA frame under the limits the
// drainer granted in WELCOME (max_frame_bytes, max_records). A message's
// records must travel in one frame (docs/protocol.md, section 4.3). It
// wraps pipeline.ErrTooLarge, which is how the pipeline recognises it (and
// dead-letters the message instead of retrying it forever).
var ErrMessageTooLarge = fmt.Errorf("sink: a queue message's records exceed the drainer's frame limits: %w", pipeline.ErrTooLarge)

// ErrRecordTooLong is returned by Send (lines framing) when a record is
// longer than Options.MaxLineBytes: the drainer would close the connection
// on it, every time it is sent. It wraps pipeline.ErrTooLarge, so the
// pipeline dead-letters the record's message instead of retrying it.
var ErrRecordTooLong = fmt.Errorf("sink: a record is longer than the drainer's line limit (drain.max_line_bytes): %w", pipeline.ErrTooLarge)

// ErrFrameLimits is passed to a Send's done (acked framing) when a frame
// already in the window does not fit the limits of a new connection (the
// drainer lowered max_frame_bytes or max_records); the records are not
// delivered and the pipeline redelivers them.
var ErrFrameLimits = errors.New("sink: frame exceeds the limits of the drainer's new connection")

// ErrUnknownFraming is wrapped by the error Send returns when
// Options.Framing is neither wire.FramingLines nor wire.FramingAcked.
var ErrUnknownFraming = errors.New("sink: unknown framing")
