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
	"fmt"
	"strings"
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
	// ID identifies the message: its stream, the stream's incarnation
	// (Epoch) and its sequence. It is stable across redeliveries, and its
	// records' identities are built from it.
	ID() record.MsgID
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

// Ack and Nak must not keep msgs after they return. The pipeline calls them
// from one goroutine, its settler, one chunk of messages at a time.

// DeadLetterer accepts records that could not be processed.
type DeadLetterer interface {
	// DeadLetter stores rec, taken from message from, with the reason it
	// was rejected. index >= 0 is the record's index in the message
	// (record.ID.Index); index < 0 means rec is the whole message payload
	// (a message that cannot be delivered at all, such as one too large for
	// a frame), with no record index. It returns nil only once the
	// dead-letter store has accepted rec durably; until then the source
	// message must not be acked.
	DeadLetter(ctx context.Context, from Message, index int, rec []byte, reason string) error
}

// RejectionDeadLetterer is a DeadLetterer that stores the structured
// rejection with the dead letter (its reason label, step, rule and offset,
// as headers). The pipeline calls DeadLetterRejection instead of
// DeadLetter when the DeadLetterer implements it, with the same contract;
// why.Error() is the reason DeadLetter would get.
type RejectionDeadLetterer interface {
	DeadLetterRejection(ctx context.Context, from Message, index int, rec []byte, why *Rejection) error
}

// Sink delivers frames of records to the drainer.
type Sink interface {
	// Send delivers recs as one frame: the records are written together, to
	// one connection, never interleaved with another frame. (The acked
	// framing may cut recs into several frames, only between messages: the
	// records of one message always travel in one frame.) Send blocks while
	// the sink cannot take the frame (no drainer listening, window full): that
	// is the pipeline's backpressure. It returns ctx.Err() when ctx ends
	// first, or ErrClosed-like errors once the sink is closed; in both cases
	// done is never called and the records count as not delivered.
	//
	// Send returns an error wrapping ErrTooLarge when one message's records
	// cannot fit in one frame (under the limits the drainer granted);
	// retrying cannot help. Nothing of recs was sent then, and done is never
	// called.
	//
	// Once Send returns nil, done is called exactly once, possibly before Send
	// returns and possibly from another goroutine: with nil when every record
	// is delivered (lines framing: its bytes were fully written to a
	// connection; acked framing: the drainer acknowledged it), or with an
	// error when they never will be (the sink was closed first).
	// Send retries across reconnects by itself.
	//
	// done must not block: it may be called from the sink's connection
	// reader, and a done that blocks stalls the reading of the drainer's
	// acknowledgements (and can fire a spurious ack timeout). The pipeline's
	// done never blocks: it only queues the outcome for the pipeline's
	// settler, which acks or naks the queue messages on its own goroutine.
	//
	// Send does not keep recs, nor the bytes their Data point to, once it
	// returns (it copies what it sends, as both framings encode frames):
	// the pipeline reuses that memory for the next chunk.
	Send(ctx context.Context, recs []record.Record, done func(error)) error
}

// Processor processes records. One Processor serves every worker: each
// worker asks it for a Worker of its own, so that a Worker's state (its
// scratch space, its expression VM) is used by one goroutine only.
type Processor interface {
	// CheckMessage is called once for each queue message, before any of
	// its records is processed, with the message's payload. An error
	// dead-letters the message whole (a *Rejection says which rule it
	// broke); nil lets its records through to the workers' Process.
	// CheckMessage must be safe for concurrent use.
	CheckMessage(data []byte) error
	// NewWorker returns the Worker that one worker goroutine uses.
	NewWorker() Worker
}

// Worker turns one input record into the record to deliver. It is used by
// one goroutine only.
type Worker interface {
	// Process processes in. It returns the bytes to deliver, out, which
	// may alias in.Data or lie in buf: Process appends what it writes to
	// buf and returns it as nbuf (possibly a new array when buf was full;
	// bytes already in buf are never moved or overwritten, so earlier
	// outputs stay valid). out must stay valid only until the sink's
	// Send of its chunk returned: the pipeline then hands the same buf to
	// the next chunk. When buf is full, Process should allocate a larger
	// one (double), so that a worker soon has room for a whole chunk.
	//
	// A nil out with a nil error drops the record (a filter), which counts
	// as done. An error sends the original record to the dead-letter
	// subject: a *Rejection carries its reason label, step, rule and byte
	// offset into the dead letter's headers; any other error is recorded
	// with reason "error" and its text. A panic in Process is recovered by
	// the pipeline and dead-letters the record with reason "panic".
	Process(in Input, buf []byte) (out, nbuf []byte, err error)
}

// Input is one record handed to a Worker.
type Input struct {
	Subject string    // the subject its queue message was published on
	ID      record.ID // its identity
	Data    []byte    // its bytes, which Process must not modify
}

// Rejection is why a record (or a message) is dead-lettered: the error a
// Processor returns for what it rejects, and what the dead letter's headers
// say.
type Rejection struct {
	// Reason is a short label from a closed set (a rule of the JSON gate,
	// "rejected" for a reject step, "step_error", "panic", "too_large",
	// "max_deliver", "error"): the reason label of
	// sluice_dead_letters_total.
	Reason string
	// Step is the index of the step in process.steps that rejected the
	// record, or -1 when no step did (the gate, the pipeline).
	Step int
	// Rule names the rule broken: the gate's rule ("invalid_utf8",
	// "max_depth", …) or the step's kind ("reject", "set", …).
	Rule string
	// Offset is the byte offset in the record where the rule broke, or -1.
	Offset int
	// Msg says what went wrong, for people.
	Msg string
}

func (r *Rejection) Error() string {
	var b strings.Builder
	if r.Step >= 0 {
		fmt.Fprintf(&b, "step %d (%s): ", r.Step, r.Rule)
	} else if r.Rule != "" {
		fmt.Fprintf(&b, "%s: ", r.Rule)
	}
	b.WriteString(r.Msg)
	if r.Offset >= 0 {
		fmt.Fprintf(&b, " (at byte %d)", r.Offset)
	}
	return b.String()
}
