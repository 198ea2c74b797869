// Package queue is sluice's source: NATS JetStream, either an embedded
// in-process server (the default, for one machine) or an external server or
// cluster.
//
// StartEmbedded runs the embedded server, Connect dials either kind, and Open
// prepares the stream, the dead-letter stream and the durable pull consumer
// and returns a Source. Each takes its own options (EmbeddedOptions,
// ConnectOptions, Options) whose zero fields mean the documented defaults.
// Source implements pipeline.Source (Fetch, Ack, Nak) and
// pipeline.DeadLetterer; its messages implement pipeline.Message.
//
// The consumed stream is a work queue: the server removes a message once it
// is acknowledged, so the disk holds only what waits for delivery, within
// the stream's byte limit. A full stream refuses new messages by default
// (Options.Discard): producers see the error and retry, and nothing they
// were told was stored is dropped. The dead-letter stream has limits of
// its own, by bytes and by age (stream.go says why work queue and not
// interest retention).
//
// A message's identity (record.MsgID) is its stream, the stream's epoch and
// its sequence. The epoch is the stream's creation time, read at Open: a
// stream deleted and created again numbers its messages from 1 again under
// a new epoch, so a drainer's dedup state for the old one cannot swallow
// them. Source.Last reports the stream's newest sequence, for a drainer to
// notice a stream that lost its tail. A fetched message without JetStream
// metadata has no identity: Fetch terminates it instead of handing it on.
//
// Fetching uses the jetstream package's Fetch (one pull request per batch),
// never Consume: Consume with per-message acks was measured to stall for the
// whole pull expiry. Fetch returns once it has at least one message and the
// flow pauses for a millisecond, and it keeps at most one pull request (one
// batch) in flight across calls, so the server keeps
// delivering while the pipeline works on the previous batch (see
// bench_results.txt for the measurement that motivated it).
//
// Acks are individual (never AckAll, which is unsafe when several sluice
// instances share one consumer) and do not wait for the server's reply; the
// client coalesces them in its write buffer.
package queue
