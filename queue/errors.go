package queue

import "errors"

// ErrAddrInUse is returned by StartEmbedded when the configured listen
// address is already taken by another process.
var ErrAddrInUse = errors.New("queue: listen address already in use")

// ErrEmbeddedStart is returned by StartEmbedded when the embedded server could
// not start for another reason (bad address, unusable data directory).
var ErrEmbeddedStart = errors.New("queue: embedded NATS server did not start")

// ErrDeadLetterConsumed is returned by Open when the dead-letter subject is
// one the consumed stream captures: dead letters would be fetched again and
// fail again, forever.
var ErrDeadLetterConsumed = errors.New("queue: dead-letter subject is inside the consumed subjects")

// ErrStreamMismatch is returned by Open when a stream already exists with a
// configuration (subjects) other than the one configured. sluice never
// changes an existing stream by itself.
var ErrStreamMismatch = errors.New("queue: existing stream does not match the configuration")

// ErrBadConfig is returned by Open and StartEmbedded for a queue
// configuration they cannot use (bad subject, bad address).
var ErrBadConfig = errors.New("queue: bad configuration")

// ErrNotConnected is returned by Fetch while the NATS connection is down and
// the client is reconnecting. It is transient: back off and fetch again.
var ErrNotConnected = errors.New("queue: not connected to NATS (reconnecting)")

// ErrFetch wraps every other transient Fetch failure (injected faults,
// JetStream API errors); back off and fetch again.
var ErrFetch = errors.New("queue: fetch failed")

// ErrClosed is returned by Fetch after Close.
var ErrClosed = errors.New("queue: source closed")

// ErrForeignMessage is returned by Ack, Nak and DeadLetter when given a
// pipeline.Message that this package did not produce.
var ErrForeignMessage = errors.New("queue: message did not come from this source")

// ErrStreamRecreated is returned by Source.Last when the consumed stream
// was deleted and created again since Open: its epoch changed, and the
// messages Fetch hands out still carry the old one. Restart sluice.
var ErrStreamRecreated = errors.New("queue: stream was created again since the source was opened")
