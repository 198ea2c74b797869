package queue

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for the zero values of EmbeddedOptions and Options. The
// configuration (package config) states the same values for its users, and
// cmd/sluice's tests pin the two together.
const (
	DefaultDataDir           = "./sluice-data"
	DefaultListen            = "127.0.0.1:4222"
	DefaultStream            = "INGEST"
	DefaultSubject           = "ingest.>"
	DefaultConsumer          = "sluice"
	DefaultDeadLetterSubject = "dlq.ingest"
	DefaultDeadLetterStream  = "DLQ"
	DefaultAckWait           = 30 * time.Second
	DefaultMaxAckPending     = 20000
	// DefaultLinger is Options.Linger's default: at 100 records per
	// message and half the rate this machine sustains, a 2ms linger keeps
	// the batches that trickle in under about 5 messages while adding at
	// most 2ms to a record's latency.
	DefaultLinger = 2 * time.Millisecond

	// DefaultMaxBytes bounds the consumed stream: 1 GiB of messages not
	// yet acknowledged (acknowledged ones leave it at once).
	DefaultMaxBytes = 1 << 30
	// DefaultMaxAge is the consumed stream's age limit: none, because
	// aging out would remove records that were never delivered.
	DefaultMaxAge = NoLimit
	// DefaultDiscard is what a full stream does: refuse new messages.
	DefaultDiscard = DiscardNew
	// DefaultDeadLetterMaxBytes bounds the dead-letter stream: 256 MiB.
	DefaultDeadLetterMaxBytes = 256 << 20
	// DefaultDeadLetterMaxAge is how long dead letters are kept: 7 days.
	DefaultDeadLetterMaxAge = 7 * 24 * time.Hour
	// DefaultDeadLetterDiscard is what a full dead-letter stream does:
	// refuse new dead letters (their messages are redelivered until there
	// is room), so that no stored dead letter is dropped for a new one.
	DefaultDeadLetterDiscard = DiscardNew
)

// NoLimit, as Options.MaxBytes, MaxAge, DeadLetterMaxBytes or
// DeadLetterMaxAge (any negative value does), means no limit of that kind.
const NoLimit = -1

// Discard is what a stream that reached one of its limits does with the
// next message.
type Discard string

const (
	// DiscardNew refuses the new message: its publisher gets an error
	// ("maximum bytes exceeded") and can retry later. Nothing stored is
	// dropped.
	DiscardNew Discard = "new"
	// DiscardOld stores the new message and removes the oldest ones to
	// make room, even when they were never consumed.
	DiscardOld Discard = "old"
)

// EmbeddedOptions configures StartEmbedded. The zero value of each field
// means its default; WithDefaults applies them.
type EmbeddedOptions struct {
	// DataDir is where the server keeps its streams (under
	// DataDir/jetstream), created when missing. "": DefaultDataDir.
	DataDir string
	// Listen is the client address, host:port; port 0 picks a free port.
	// "": DefaultListen.
	Listen string
	// SyncAlways makes the server fsync every write to its store before it
	// acknowledges a publish: a power loss then loses nothing a producer
	// was told was stored, at a cost in publish rate (see the README).
	// False: the store is synced every SyncInterval, and a power loss may
	// lose what was written since the last sync.
	SyncAlways bool
	// SyncInterval is how often the store is synced when SyncAlways is
	// false. Zero: DefaultSyncInterval.
	SyncInterval time.Duration
	// Token, when not empty, is the token every client must present
	// (nats://TOKEN@host, nats.Token); User and Password, when User is not
	// empty, the user and password instead. Connect passes them for the
	// in-process client. All empty: any client that reaches Listen may
	// publish, consume and delete streams.
	Token          string
	User, Password string
	// Logger receives the server's logs (component=nats-server) and the
	// queue's. nil: slog.Default().
	Logger *slog.Logger
}

// DefaultSyncInterval is EmbeddedOptions.SyncInterval's default: the
// longest a power loss can take back of what producers were told was
// stored. (The server's own default is 2 minutes.)
const DefaultSyncInterval = time.Second

// WithDefaults returns o with every zero field replaced by its default.
func (o EmbeddedOptions) WithDefaults() EmbeddedOptions {
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// ConnectOptions configures Connect to an external server. With an
// embedded server only Logger is used. No field has a default other than
// "none"; WithDefaults only fills in Logger.
type ConnectOptions struct {
	// URL of the server or cluster, comma-separated URLs. Required for an
	// external server; a password or token in it is never logged.
	URL string
	// User and Password authenticate with user/password. "": none.
	User     string
	Password string
	// Token authenticates with a token. "": none.
	Token string
	// NKeyFile is a path to an nkey seed file. "": none.
	NKeyFile string
	// CredsFile is a path to a NATS .creds file (JWT and seed). "": none.
	CredsFile string
	// TLS configures client TLS. Zero: none unless the URL says tls://.
	TLS TLSOptions
	// Logger receives connection events. nil: slog.Default().
	Logger *slog.Logger
	// OnReconnect, when set, is called (on the NATS client's goroutine; it
	// must not block) each time the connection is re-established after a
	// loss. The server may have restarted with a store that lost its tail:
	// sluice run starts a new drainer session so that its HELLO re-runs
	// the drainer's rewind check. nil: nothing.
	OnReconnect func()
}

// TLSOptions are client TLS files. Each "" means none; CertFile and
// KeyFile go together.
type TLSOptions struct {
	CAFile   string
	CertFile string
	KeyFile  string
}

// WithDefaults returns o with Logger set when it was nil.
func (o ConnectOptions) WithDefaults() ConnectOptions {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Options configures Open and the Source it returns. The zero value of
// each field means its default; WithDefaults applies them.
//
// Errors about these fields name them by their configuration keys
// (queue.subjects, queue.dead_letter_subject, ...), which is how an
// operator sets them.
type Options struct {
	// Stream is the JetStream stream consumed, created when missing.
	// "": DefaultStream.
	Stream string
	// Subjects the stream captures when Open creates it; an existing
	// stream must capture exactly these. Empty: [DefaultSubject].
	Subjects []string
	// Consumer is the durable pull consumer's name, shared by every sluice
	// instance. "": DefaultConsumer.
	Consumer string
	// DeadLetterSubject receives the records DeadLetter is given; it must
	// not be one the consumed subjects capture. "": DefaultDeadLetterSubject.
	DeadLetterSubject string
	// DeadLetterStream stores the dead letters, created when missing; it
	// must differ from Stream. "": DefaultDeadLetterStream.
	DeadLetterStream string
	// AckWait is how long the server waits for an ack before redelivering.
	// 0 (or negative): DefaultAckWait.
	AckWait time.Duration
	// MaxAckPending caps unacknowledged messages on the consumer.
	// 0 (or negative): DefaultMaxAckPending.
	MaxAckPending int

	// The consumed stream is a work queue: a message leaves it once
	// acknowledged. These limits bound what waits in it (0: the default;
	// negative, such as NoLimit: none); an existing stream must have them
	// (see Migrate).
	//
	// MaxBytes bounds the stored messages' bytes. 0: DefaultMaxBytes.
	MaxBytes int64
	// MaxAge removes messages older than this, consumed or not.
	// 0: DefaultMaxAge (none).
	MaxAge time.Duration
	// Discard is what the stream does when full. "": DefaultDiscard.
	Discard Discard
	// DeadLetterMaxBytes bounds the dead-letter stream's bytes.
	// 0: DefaultDeadLetterMaxBytes.
	DeadLetterMaxBytes int64
	// DeadLetterMaxAge removes dead letters older than this.
	// 0: DefaultDeadLetterMaxAge.
	DeadLetterMaxAge time.Duration
	// DeadLetterDiscard is what the dead-letter stream does when full.
	// "": DefaultDeadLetterDiscard.
	DeadLetterDiscard Discard
	// Migrate lets Open bring existing streams that differ from these
	// options (created by an earlier version, or edited by hand) to them,
	// logging each change: limits are updated in place, and a consumed
	// stream with another retention policy is deleted and created again
	// (a new epoch), but only once its consumer has acknowledged every
	// message in it. Open never drops a stored message to migrate. false:
	// a difference is an error wrapping ErrStreamMismatch that lists it.
	Migrate bool
	// Bind makes Open create nothing: the stream, the dead-letter stream
	// and the consumer must exist (created by an operator, e.g. with the
	// nats CLI or Terraform) and are checked; a missing one, or one whose
	// subjects, retention, ack policy or limits differ, is an error naming
	// both values. false: Open creates what is missing.
	Bind bool
	// Replicas is the streams' replica count on a JetStream cluster (1, 3
	// or 5; at most the cluster's size). 0: 1.
	Replicas int
	// Storage is the streams' storage, StorageFile or StorageMemory (lost
	// when the server restarts). "": StorageFile.
	Storage Storage

	// Linger is the longest Fetch keeps a batch open for more messages
	// once it has the first, while they trickle in; a pause of a
	// millisecond in the flow ends the batch sooner, and messages already
	// waiting in the client are taken regardless. It bounds the latency a
	// batch adds to its first message. 0: DefaultLinger.
	Linger time.Duration

	// Logger receives the source's logs. nil: slog.Default().
	Logger *slog.Logger
	// Registerer receives the source's metrics. nil: they are not
	// registered.
	Registerer prometheus.Registerer
	// DisablePrefetch stops Fetch from issuing the next pull request before
	// it returns. For benchmarks that measure what prefetching buys; leave
	// it false.
	DisablePrefetch bool
}

// Storage is where the streams keep their messages.
type Storage string

// The storages.
const (
	StorageFile   Storage = "file"
	StorageMemory Storage = "memory"
)

// WithDefaults returns o with every zero field replaced by its default and
// every negative stream limit by NoLimit. Registerer stays nil (no
// registration) and Subjects is copied, so the result shares nothing with
// o's caller.
func (o Options) WithDefaults() Options {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Storage == "" {
		o.Storage = StorageFile
	}
	if len(o.Subjects) == 0 {
		o.Subjects = []string{DefaultSubject}
	} else {
		o.Subjects = append([]string(nil), o.Subjects...)
	}
	if o.Consumer == "" {
		o.Consumer = DefaultConsumer
	}
	if o.DeadLetterSubject == "" {
		o.DeadLetterSubject = DefaultDeadLetterSubject
	}
	if o.DeadLetterStream == "" {
		o.DeadLetterStream = DefaultDeadLetterStream
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.Linger <= 0 {
		o.Linger = DefaultLinger
	}
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = DefaultMaxAckPending
	}
	o.MaxBytes = limitOr(o.MaxBytes, DefaultMaxBytes)
	o.MaxAge = limitOr(o.MaxAge, DefaultMaxAge)
	o.DeadLetterMaxBytes = limitOr(o.DeadLetterMaxBytes, DefaultDeadLetterMaxBytes)
	o.DeadLetterMaxAge = limitOr(o.DeadLetterMaxAge, DefaultDeadLetterMaxAge)
	if o.Discard == "" {
		o.Discard = DefaultDiscard
	}
	if o.DeadLetterDiscard == "" {
		o.DeadLetterDiscard = DefaultDeadLetterDiscard
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// limitOr is v with 0 replaced by def and any negative value by NoLimit.
func limitOr[T int64 | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return NoLimit
	}
	return v
}
