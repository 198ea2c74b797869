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
	// Logger receives the server's logs (component=nats-server) and the
	// queue's. nil: slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns o with every zero field replaced by its default.
func (o EmbeddedOptions) WithDefaults() EmbeddedOptions {
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
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

// WithDefaults returns o with every zero field replaced by its default.
// Registerer stays nil (no registration) and Subjects is copied, so the
// result shares nothing with o's caller.
func (o Options) WithDefaults() Options {
	if o.Stream == "" {
		o.Stream = DefaultStream
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
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = DefaultMaxAckPending
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}
