package load

import "errors"

// ErrBadOptions is wrapped by the error Generate returns for GenOptions that
// fail validation.
var ErrBadOptions = errors.New("load: bad options")

// ErrNoStream is returned by Generate when no JetStream stream captures the
// subject, so every publish would fail.
var ErrNoStream = errors.New("load: no stream for subject")

// ErrPublishFailed is returned by Generate when not a single record was
// acknowledged by the server although some were attempted.
var ErrPublishFailed = errors.New("load: every publish failed")

// ErrAckTimeout is the error recorded for a publish whose acknowledgement
// did not arrive within GenOptions.AckTimeout; the publish is retried.
var ErrAckTimeout = errors.New("load: publish ack timeout")

// ErrNotRecord is wrapped by ParseRecord's error for a line that is not a
// complete, well-formed load record.
var ErrNotRecord = errors.New("load: not a record")

// ErrRunMismatch is returned by Verifier.Expect for a Result of another run
// or with more records than the verifier expects.
var ErrRunMismatch = errors.New("load: result does not match verifier")
