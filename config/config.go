// Package config holds sluice's configuration: the YAML schema, its
// defaults, SLUICE_* environment overrides and validation whose errors name
// the file, line and field.
//
// A Config is built in layers, each overriding the one before: Default, then
// the YAML file (Load), then SLUICE_* environment variables, then Set (which
// the CLI uses for flags). Validate checks the result; every error is a
// *FieldError that says where the offending value came from: the file, line
// and column, the environment variable, the command line, or the defaults.
//
// # File format
//
// The file is one YAML document whose top level holds the sections below.
// Unknown fields, wrong types and values that cannot be parsed are errors.
// A field written with no value (null) keeps its default. Values are read
// exactly as from the environment (see Set):
//
//   - durations are Go durations with a unit: "200ms", "5s", "1m30s". A plain
//     integer is rejected (is 200 milliseconds or seconds?), except 0.
//   - byte sizes (ByteSize) are a plain integer of bytes or an integer with a
//     unit: "64KiB", "16MiB", "1GiB" (powers of 1024) or "64kB", "16MB"
//     (powers of 1000).
//   - drain.socket_mode is octal permission bits: 0600, 0o600 or "600".
//   - lists are YAML sequences in the file and comma-separated in the
//     environment and on the command line.
//
// # Environment
//
// Every field can be set by the variable SLUICE_ followed by its dotted key
// in upper case with dots replaced by underscores: pipeline.workers is
// SLUICE_PIPELINE_WORKERS, queue.tls.ca_file is SLUICE_QUEUE_TLS_CA_FILE,
// faults is SLUICE_FAULTS. An empty variable counts as unset.
package config

import (
	"fmt"
	"path/filepath"
	"runtime"
	"time"

	"github.com/sluice-dev/sluice/wire"
)

// Config is the whole of sluice's configuration. Start from Default (or
// Load); a zero Config is not valid.
type Config struct {
	Queue    Queue    `yaml:"queue"`
	Pipeline Pipeline `yaml:"pipeline"`
	Process  Process  `yaml:"process"`
	Sink     Sink     `yaml:"sink"`
	Drain    Drain    `yaml:"drain"`
	Admin    Admin    `yaml:"admin"`
	Flight   Flight   `yaml:"flight"`
	Log      Log      `yaml:"log"`
	Runtime  Runtime  `yaml:"runtime"`
	// Faults are fault-point actions set at start, e.g.
	// "sink.reconnect.before_close=delay(5ms)". Empty: none.
	Faults []string `yaml:"faults"`

	// src records where each field's value came from, for error messages.
	// Nil: every field holds its default (or was set directly in Go code).
	src *sources
}

// File returns the config file c was loaded from, "" for none.
func (c *Config) File() string {
	if c.src == nil {
		return ""
	}
	return c.src.file
}

// Origin returns where the field key was set in the config file: the file,
// line and column, or "" and zeros when it was not set there.
func (c *Config) Origin(key string) (file string, line, column int) {
	o, ok := c.src.lookup(key)
	if !ok || o.source != SourceFile {
		return "", 0, 0
	}
	return c.src.file, o.line, o.column
}

// Queue configures where records come from.
type Queue struct {
	// Kind is the queue sluice consumes: "nats" (the default: JetStream,
	// embedded or external, configured by the keys below) or "kafka" (a
	// Kafka consumer group, configured by queue.kafka; the NATS keys are
	// then unused).
	Kind string `yaml:"kind"`
	// URL of an external NATS server or cluster (comma-separated); Redacted
	// hides a password or token in it. Empty: start an embedded JetStream
	// server in-process.
	URL string `yaml:"url"`
	// DataDir is where the embedded server keeps its streams. Default "./sluice-data".
	DataDir string `yaml:"data_dir"`
	// Listen is the embedded server's client address, so producers can
	// publish to it. Default "127.0.0.1:4222"; port 0 picks a free port.
	Listen string `yaml:"listen"`
	// Sync is how the embedded server makes its store durable: "always"
	// fsyncs before acknowledging each publish (a power loss loses nothing
	// a producer was told was stored), or an interval between syncs (a
	// power loss may lose what was written since the last). Default "1s".
	Sync string `yaml:"sync"`
	// Stream is the JetStream stream consumed. Default "INGEST".
	Stream string `yaml:"stream"`
	// Subjects the stream captures (when sluice creates it). Default ["ingest.>"].
	Subjects []string `yaml:"subjects"`
	// Consumer is the durable pull consumer's name, shared by every sluice
	// instance. Default "sluice".
	Consumer string `yaml:"consumer"`
	// DeadLetterSubject receives records that fail processing. Default "dlq.ingest".
	DeadLetterSubject string `yaml:"dead_letter_subject"`
	// DeadLetterStream stores the dead letters (created when missing).
	// Default "DLQ".
	DeadLetterStream string `yaml:"dead_letter_stream"`
	// AckWait is how long the queue waits for an ack before redelivering.
	// Default 30s.
	AckWait time.Duration `yaml:"ack_wait"`
	// MaxAckPending caps unacknowledged messages on the consumer; at least 1.
	// Default 20000.
	MaxAckPending int `yaml:"max_ack_pending"`
	// MaxDeliver: a message delivered more than this many times (it
	// crashed sluice or timed out every time) is dead-lettered whole with
	// reason max_deliver and acked, instead of cycling through redelivery;
	// at least 1. Default 10.
	MaxDeliver int `yaml:"max_deliver"`
	// MaxBytes bounds the consumed stream, a work queue that holds only
	// messages not yet acknowledged. At least 64KiB; 0: no limit. Default 1GiB.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxAge removes messages older than this from the consumed stream,
	// delivered or not. 0 (the default): none.
	MaxAge time.Duration `yaml:"max_age"`
	// Discard is what a full consumed stream does: "new" (the default)
	// refuses the publish, so the producer gets an error; "old" drops the
	// oldest messages, delivered or not.
	Discard string `yaml:"discard"`
	// DeadLetterMaxBytes bounds the dead-letter stream. At least 64KiB; 0:
	// no limit. Default 256MiB.
	DeadLetterMaxBytes ByteSize `yaml:"dead_letter_max_bytes"`
	// DeadLetterMaxAge removes dead letters older than this. 0: none.
	// Default 168h (7 days).
	DeadLetterMaxAge time.Duration `yaml:"dead_letter_max_age"`
	// DeadLetterDiscard is what a full dead-letter stream does: "new" (the
	// default) refuses the dead letter, so its message is redelivered
	// until there is room; "old" drops the oldest dead letters.
	DeadLetterDiscard string `yaml:"dead_letter_discard"`
	// Migrate lets sluice bring existing streams with other settings (from
	// an earlier version) to these at start, logging each change and never
	// dropping a stored message. Default false: such a stream is an error
	// that says what differs.
	Migrate bool `yaml:"migrate"`
	// Create lets sluice create the streams and the consumer when they are
	// missing. false: bind to existing ones and check them (a missing one,
	// or one whose subjects, retention, ack policy or limits differ, stops
	// sluice at start naming both values). Default true.
	Create bool `yaml:"create"`
	// Replicas is the streams' replica count on a JetStream cluster (1, 3
	// or 5). Default 1.
	Replicas int `yaml:"replicas"`
	// Storage is the streams' storage: "file", or "memory" (lost when the
	// server restarts). Default "file".
	Storage string `yaml:"storage"`
	// Auth is what the embedded server asks of its clients: "token" (a
	// client presents queue.token, or the token in token_file, which
	// sluice creates at first start with mode 0600), "user" (queue.user
	// and queue.password), or "none" (any client that reaches
	// queue.listen may publish, consume and delete the streams; refused
	// with a non-loopback listen address). sluice's own commands (load,
	// dlq, status, demo) read the same settings and file. Default "token".
	Auth string `yaml:"auth"`
	// TokenFile holds the embedded server's token when queue.auth is
	// "token" and queue.token is empty. Default "": nats.token in
	// queue.data_dir.
	TokenFile string `yaml:"token_file"`
	// Credentials for an external server, and for the embedded one with
	// queue.auth token or user. Never logged; Redacted hides Password and
	// Token. Empty: none.
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	Token    string `yaml:"token"`
	// NKeyFile is a path to an nkey seed file. Empty: none.
	NKeyFile string `yaml:"nkey_file"`
	// CredsFile is a path to a NATS .creds file. Empty: none.
	CredsFile string `yaml:"creds_file"`
	// TLS for an external server.
	TLS TLS `yaml:"tls"`
	// Kafka configures the Kafka source (queue.kind: kafka).
	Kafka Kafka `yaml:"kafka"`
}

// Kafka configures the Kafka source: a consumer group that commits each
// partition's offset only past records the sink has delivered.
type Kafka struct {
	// Brokers are the seed brokers, host:port each. Default ["127.0.0.1:9092"].
	Brokers []string `yaml:"brokers"`
	// Topics consumed; they must exist. Default ["ingest"].
	Topics []string `yaml:"topics"`
	// Group is the consumer group, shared by every sluice instance.
	// Default "sluice".
	Group string `yaml:"group"`
	// DeadLetterTopic receives records that fail processing; it must exist
	// and must not be consumed. Default "ingest-dlq".
	DeadLetterTopic string `yaml:"dead_letter_topic"`
	// SessionTimeout is how long the group waits for a silent member
	// before giving its partitions to the others. Default 45s.
	SessionTimeout time.Duration `yaml:"session_timeout"`
}

// TLS configures client TLS. All empty: no TLS unless the URL says tls://.
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Pipeline configures the worker pool.
type Pipeline struct {
	// Workers is the number of processing goroutines, 1 to 1024. Default: the
	// number of CPUs (runtime.NumCPU, at most 1024).
	Workers int `yaml:"workers"`
	// BatchSize is the most messages fetched at once, 1 to 10000. Default 500.
	BatchSize int `yaml:"batch_size"`
	// FetchWait is the longest a fetch waits for its first message. Default 200ms.
	FetchWait time.Duration `yaml:"fetch_wait"`
	// FetchLinger is the longest a fetch stays open for more messages once
	// it has its first, when they trickle in rather than come as a burst:
	// the latency a batch may add to its first message. A pause of 1ms in
	// the flow ends a batch sooner. Default 2ms.
	FetchLinger time.Duration `yaml:"fetch_linger"`
	// MaxInflightRecords bounds records fetched but not yet settled; at least
	// BatchSize. Default 50000.
	MaxInflightRecords int `yaml:"max_inflight_records"`
	// MaxInflightBytes bounds their bytes. Default 16 MiB; at least 64 KiB.
	MaxInflightBytes ByteSize `yaml:"max_inflight_bytes"`
	// ShutdownTimeout is how long graceful shutdown waits for in-flight work
	// before abandoning it for redelivery. Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// OrderBy is an expression giving each record's ordering key, like
	// "user_id" or "subject": records with the same key reach the drainer
	// in the order they came off the queue (sluice keeps the queue order of
	// all records, processing still on every worker). Default "": no
	// ordering promise between messages.
	OrderBy string `yaml:"order_by"`
}

// Process configures what the workers do to each record: the strict JSON
// gate (always on, with the limits below), then the steps, in order.
type Process struct {
	// Steps are applied in order to every record; see Step. They can be
	// set only in the config file. Empty (the default): the gate only.
	Steps []Step `yaml:"steps"`
	// MaxDepth bounds the nesting of objects and arrays in a record, 1 to
	// 10000. Default 64.
	MaxDepth int `yaml:"max_depth"`
	// MaxRecordBytes bounds one record. Default 1MiB.
	MaxRecordBytes ByteSize `yaml:"max_record_bytes"`
	// MaxMessageBytes bounds one queue message, at least max_record_bytes.
	// Default 8MiB.
	MaxMessageBytes ByteSize `yaml:"max_message_bytes"`
}

// Step is one processing step, a mapping with exactly one key:
//
//   - filter: 'event != "drop"'          # false drops the record
//   - set: {user: 'upper(user)'}         # field paths to expressions
//   - delete: [password, debug.trace]    # field paths
//   - rename: {usr: user_name}           # old path to new path
//   - reject: {if: 'amount < 0', reason: 'negative amount'}
//
// Expressions are github.com/expr-lang/expr; they see the record's fields,
// the message's subject and functions such as now().
type Step struct {
	Filter string
	Set    []Pair // in the order written
	Delete []string
	Rename []Pair // From is Key, To is Value
	Reject *Reject
	// Line and Column locate the step in the config file (0: not from a file).
	Line, Column int
}

// Pair is one entry of a set or rename step.
type Pair struct {
	Key, Value string
	// Line and Column locate the entry in the config file.
	Line, Column int
}

// Reject is a reject step: records for which If is true are dead-lettered
// with Reason.
type Reject struct{ If, Reason string }

// Sink configures the output socket.
type Sink struct {
	// Socket is the Unix socket path the drainer listens on. Default
	// "./sluice.sock". At most 107 bytes: the kernel's sun_path holds 108
	// bytes on Linux, including the terminating NUL.
	Socket string `yaml:"socket"`
	// Framing is wire.FramingLines ("lines", newline-delimited JSON) or
	// wire.FramingAcked ("acked"). Default "lines".
	Framing wire.Framing `yaml:"framing"`
	// BackoffMin and BackoffMax bound the reconnect backoff. Defaults 50ms, 5s.
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// WriteTimeout fails a write that makes no progress for this long, and
	// the sink reconnects. Default 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxConnAge reconnects after a connection has been up this long. 0: never.
	MaxConnAge time.Duration `yaml:"max_conn_age"`
	// AckTimeout (acked framing): with frames unacknowledged and no ack for
	// this long, the sink reconnects (reason ack_timeout) and re-sends them.
	// Default 10s.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// WindowFrames (acked framing) bounds frames written but not yet
	// acknowledged; when full, workers wait. Default 64.
	WindowFrames int `yaml:"window_frames"`
	// WindowBytes (acked framing) bounds their bytes. Default 8MiB.
	WindowBytes ByteSize `yaml:"window_bytes"`
	// Instance names this sluice to the drainer in the acked handshake.
	// Empty: hostname and process id.
	Instance string `yaml:"instance"`
}

// Drain configures the reference drainer (sluice drain).
type Drain struct {
	// Socket is the path to listen on. Default: the same as sink.socket,
	// whatever layer set that (file, environment or Set).
	Socket string `yaml:"socket"`
	// Out is a directory for output files, or "-" for stdout. Default "./sluice-out".
	Out string `yaml:"out"`
	// RotateBytes starts a new output file past this size. Default 64 MiB.
	RotateBytes ByteSize `yaml:"rotate_bytes"`
	// SocketMode is the socket file's permission bits, written in octal.
	// Default 0600 (owner only).
	SocketMode uint32 `yaml:"socket_mode"`
	// AllowUIDs, when not empty, lets only peers with these user ids
	// connect (checked with SO_PEERCRED). Empty: anyone the socket mode lets in.
	AllowUIDs []string `yaml:"allow_uids"`
	// AllowGIDs likewise restricts peers by group id. Empty: no restriction.
	AllowGIDs []string `yaml:"allow_gids"`
	// WriteIdentity (acked framing) prefixes each output line with the
	// record's identity, "stream:seq:index" and a tab. Default false: the
	// lines are exactly the records.
	WriteIdentity bool `yaml:"write_identity"`
	// WriteReceived prefixes each output line with the time the drainer
	// received it (Unix nanoseconds) and a tab, before the identity prefix:
	// sluice load then measures latency without polling lag. Default false.
	WriteReceived bool `yaml:"write_received"`
	// MaxLineBytes (lines framing) is the longest record line, newline
	// excluded, the drainer accepts; a longer one closes the connection.
	// sluice run refuses to send a longer record (it is dead-lettered), and
	// start fails when process.max_record_bytes is larger. Default 1 MiB.
	MaxLineBytes ByteSize `yaml:"max_line_bytes"`
	// MaxFrameBytes (acked framing) is the largest DATA frame body the
	// drainer grants in WELCOME, 4 KiB to 2 GiB-1. A queue message whose
	// records do not fit in one frame is dead-lettered; start fails when one
	// record of process.max_record_bytes could not fit. Default 4 MiB.
	MaxFrameBytes ByteSize `yaml:"max_frame_bytes"`
	// AcceptRewind (acked framing) accepts a rewind of the queue instead
	// of refusing it: when a producer's queue stream went back below what
	// the drainer committed (its store lost its tail, or was restored from
	// a backup), the drainer forgets the sequences committed above the
	// queue's last one and writes the queue's new messages that reuse
	// them. Default false: the drainer refuses that stream (STREAM_REWOUND)
	// until a start with this set; turn it on for that one start.
	AcceptRewind bool `yaml:"accept_rewind"`
}

// Flight configures the flight recorder: the last seconds of the Go
// execution trace kept in memory and written to a file when something
// anomalous happens (a reconnect, a write error, an ack timeout, a stall,
// SIGUSR1, or POST /debug/flight/dump), for go tool trace.
type Flight struct {
	// Enabled turns the recorder on. Default false.
	Enabled bool `yaml:"enabled"`
	// Window is how much recent execution the recorder keeps. Default 5s.
	Window time.Duration `yaml:"window"`
	// MaxBytes bounds the recorder's memory. Default 16MiB.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// Dir receives the dumps. Default "./sluice-traces".
	Dir string `yaml:"dir"`
	// MinInterval is the least time between two automatic dumps. Default 10s.
	MinInterval time.Duration `yaml:"min_interval"`
	// MaxFiles is how many dumps to keep; older ones are deleted. Default 20.
	MaxFiles int `yaml:"max_files"`
	// StallAfter dumps when work is pending but nothing progressed for this
	// long. Default 30s; 0 turns stall detection off.
	StallAfter time.Duration `yaml:"stall_after"`
}

// Admin configures the admin HTTP server (/metrics, /healthz, /readyz).
type Admin struct {
	// Listen address. Default "127.0.0.1:9464"; "off" disables it.
	Listen string `yaml:"listen"`
	// Pprof serves Go's profiling endpoints under /debug/pprof/ (CPU and
	// heap profiles, goroutine dumps, execution traces): internals that
	// only someone debugging should reach. Default false.
	Pprof bool `yaml:"pprof"`
	// Token is the bearer token the private endpoints (/faults,
	// /sink/reconnect, /debug/, /tap/) require. Empty: the one in
	// TokenFile. A secret: never printed.
	Token string `yaml:"token"`
	// TokenFile holds the token when Token is empty; sluice run and
	// sluice drain create it (mode 0600, random) at first start, and
	// sluice tap reads it. Default "./sluice-admin.token".
	TokenFile string `yaml:"token_file"`
	// AllowRemote lets listen be a non-loopback address. The open
	// endpoints (/metrics, /healthz, /readyz, /status) need no token, so
	// by default sluice refuses to serve them beyond the host. Default false.
	AllowRemote bool `yaml:"allow_remote"`
}

// Log configures logging.
type Log struct {
	// Format is "text" or "json". Default "text".
	Format string `yaml:"format"`
	// Level is "debug", "info", "warn" or "error". Default "info".
	Level string `yaml:"level"`
}

// Runtime configures the Go runtime of sluice run.
type Runtime struct {
	// MemoryLimit is the Go runtime's soft memory limit
	// (runtime/debug.SetMemoryLimit): past it the garbage collector works
	// harder to stay below. It bounds the process's memory, the embedded
	// JetStream server's caches included, at high input rates. 0 means
	// auto: 96 MiB with the embedded server, 48 MiB with an external one.
	// A GOMEMLIMIT environment variable wins over it. Default 0 (auto).
	MemoryLimit ByteSize `yaml:"memory_limit"`
}

// ParseSync reads queue.sync: "always", or a positive interval such as
// "1s" or "2m".
func ParseSync(s string) (always bool, interval time.Duration, err error) {
	if s == "always" {
		return true, 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return false, 0, fmt.Errorf("must be \"always\" or a positive interval such as \"1s\" (got %q)", s)
	}
	return false, d, nil
}

// Default returns the configuration used when nothing else is set: the
// defaults an operator sees (sluice check --print, docs/config.md) and that
// Validate checks. Each part applies the same defaults to the zero values
// of its own Options (queue.Options.WithDefaults and the like), so that it
// works without this package; cmd/sluice maps a Config onto those Options,
// and its test TestOptions_DefaultsMatchConfig fails when a default here
// and the part's own default differ. The field docs above state the same
// values.
func Default() Config {
	return Config{
		Queue: Queue{
			Kind:               QueueNATS,
			DataDir:            "./sluice-data",
			Listen:             "127.0.0.1:4222",
			Auth:               AuthToken,
			Sync:               "1s",
			Create:             true,
			Replicas:           1,
			Storage:            "file",
			Stream:             "INGEST",
			Subjects:           []string{"ingest.>"},
			Consumer:           "sluice",
			DeadLetterSubject:  "dlq.ingest",
			DeadLetterStream:   "DLQ",
			AckWait:            30 * time.Second,
			MaxAckPending:      20000,
			MaxDeliver:         10,
			MaxBytes:           1 * GiB,
			MaxAge:             0,
			Discard:            DiscardNew,
			DeadLetterMaxBytes: 256 * MiB,
			DeadLetterMaxAge:   7 * 24 * time.Hour,
			DeadLetterDiscard:  DiscardNew,
			Kafka: Kafka{
				Brokers:         []string{"127.0.0.1:9092"},
				Topics:          []string{"ingest"},
				Group:           "sluice",
				DeadLetterTopic: "ingest-dlq",
				SessionTimeout:  45 * time.Second,
			},
		},
		Pipeline: Pipeline{
			Workers:            min(runtime.NumCPU(), MaxWorkers),
			BatchSize:          500,
			FetchWait:          200 * time.Millisecond,
			FetchLinger:        2 * time.Millisecond,
			MaxInflightRecords: 50000,
			MaxInflightBytes:   16 * MiB,
			ShutdownTimeout:    10 * time.Second,
		},
		Process: Process{
			MaxDepth:        64,
			MaxRecordBytes:  1 * MiB,
			MaxMessageBytes: 8 * MiB,
		},
		Sink: Sink{
			Socket:       "./sluice.sock",
			Framing:      wire.FramingLines,
			BackoffMin:   50 * time.Millisecond,
			BackoffMax:   5 * time.Second,
			WriteTimeout: 10 * time.Second,
			AckTimeout:   10 * time.Second,
			WindowFrames: 64,
			WindowBytes:  8 * MiB,
		},
		Drain: Drain{
			Socket:        "./sluice.sock", // follows Sink.Socket; see Load and Set
			Out:           "./sluice-out",
			RotateBytes:   64 * MiB,
			SocketMode:    0o600,
			MaxLineBytes:  1 * MiB,
			MaxFrameBytes: 4 * MiB,
		},
		Admin: Admin{Listen: "127.0.0.1:9464", TokenFile: "./sluice-admin.token"},
		Flight: Flight{
			Window:      5 * time.Second,
			MaxBytes:    16 * MiB,
			Dir:         "./sluice-traces",
			MinInterval: 10 * time.Second,
			MaxFiles:    20,
			StallAfter:  30 * time.Second,
		},
		Log:    Log{Format: "text", Level: "info"},
		Faults: nil,
	}
}

// The embedded server's queue.auth settings.
const (
	AuthToken = "token"
	AuthUser  = "user"
	AuthNone  = "none"
)

// QueueTokenFile is the file that holds the embedded server's token:
// queue.token_file, or nats.token in queue.data_dir.
func (c *Config) QueueTokenFile() string {
	if c.Queue.TokenFile != "" {
		return c.Queue.TokenFile
	}
	return filepath.Join(c.Queue.DataDir, "nats.token")
}
