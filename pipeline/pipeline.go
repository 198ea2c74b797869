// Package pipeline runs sluice's worker pool: it fetches batches from a
// Source, processes their records on N workers, hands the results to a Sink
// and acknowledges each queue message only once every record derived from it
// is delivered, dropped by a filter, or accepted by the dead-letter subject.
//
// The pipeline joins the queue and the socket without knowing either: it
// declares the small Source, Message, DeadLetterer and Sink interfaces it
// needs, and the queue and sink packages implement them.
package pipeline

import (
	"context"
	"time"

	"github.com/sluice-dev/sluice/record"
)

// Message is one queue message, which carries one record or several
// newline-separated records.
type Message interface {
	// Data returns the message payload. The pipeline does not modify it.
	Data() []byte
	// Subject is the subject the message was published on.
	Subject() string
	// Stream and Seq identify the message in its stream; they are stable
	// across redeliveries.
	Stream() string
	Seq() uint64
}

// Source yields batches of queue messages and settles them.
//
// Fetch is called from one goroutine at a time; Ack and Nak may be called from
// any goroutine concurrently with Fetch.
type Source interface {
	// Fetch returns up to max messages. It waits at most maxWait for the first
	// one and returns an empty slice and nil error when none arrived in time.
	// It returns ctx.Err() once ctx is done. Other errors are transient
	// (connection trouble); the caller backs off and calls Fetch again.
	Fetch(ctx context.Context, max int, maxWait time.Duration) ([]Message, error)
	// Ack acknowledges msgs, each individually (never a cumulative ack, which
	// is unsafe when several instances share one consumer). An acked message
	// is never redelivered. The source may coalesce the acks on the wire, but
	// Ack must not return before they are handed to the connection.
	Ack(msgs []Message) error
	// Nak asks for msgs to be redelivered (after a delay chosen by the source).
	Nak(msgs []Message) error
}

// DeadLetterer accepts records that could not be processed.
type DeadLetterer interface {
	// DeadLetter stores rec, taken from message from, with the reason it
	// was rejected. It returns nil only once the dead-letter store has
	// accepted the record durably; until then the source message must not be
	// acked.
	DeadLetter(ctx context.Context, from Message, index int, rec []byte, reason string) error
}

// Sink delivers frames of records to the drainer.
type Sink interface {
	// Send delivers recs as one frame: the records are written together, to
	// one connection, never interleaved with another frame. Send blocks while
	// the sink cannot take the frame (no drainer listening, window full): that
	// is the pipeline's backpressure. It returns ctx.Err() when ctx ends
	// first, or ErrClosed-like errors once the sink is closed; in both cases
	// done is never called and the records count as not delivered.
	//
	// Once Send returns nil, done is called exactly once, possibly before Send
	// returns and possibly from another goroutine: with nil when every record
	// is delivered (lines framing: its bytes were fully written to a
	// connection; acked framing: the drainer acknowledged it), or with an
	// error when they never will be (the sink was closed first).
	// Send retries across reconnects by itself.
	Send(ctx context.Context, recs []record.Record, done func(error)) error
}

// Processor turns one input record into the record to deliver.
//
// Process must be safe for concurrent use: every worker calls it. It returns
// the bytes to deliver (which may alias rec); a nil slice with a nil error
// drops the record (a filter), which counts as done. An error sends the
// original record to the dead-letter subject with err.Error() as the reason.
type Processor interface {
	Process(rec []byte) ([]byte, error)
}
