// Package config holds sluice's configuration: the YAML schema, its
// defaults, SLUICE_* environment overrides and validation whose errors name
// the file, line and field.
package config

import "time"

// Config is the whole of sluice's configuration. The zero value of every
// field means "use the default" (see Default); Load fills them in.
type Config struct {
	Queue    Queue    `yaml:"queue"`
	Pipeline Pipeline `yaml:"pipeline"`
	Sink     Sink     `yaml:"sink"`
	Drain    Drain    `yaml:"drain"`
	Admin    Admin    `yaml:"admin"`
	Log      Log      `yaml:"log"`
	// Faults are fault-point actions set at start, e.g.
	// "sink.reconnect.before_close=delay(5ms)". Empty: none.
	Faults []string `yaml:"faults"`
}

// Queue configures where records come from.
type Queue struct {
	// URL of an external NATS server or cluster (comma-separated). Empty:
	// start an embedded JetStream server in-process.
	URL string `yaml:"url"`
	// DataDir is where the embedded server keeps its streams. Default "./sluice-data".
	DataDir string `yaml:"data_dir"`
	// Listen is the embedded server's client address, so producers can
	// publish to it. Default "127.0.0.1:4222"; port 0 picks a free port.
	Listen string `yaml:"listen"`
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
	// MaxAckPending caps unacknowledged messages on the consumer. Default 20000.
	MaxAckPending int `yaml:"max_ack_pending"`
	// Credentials for an external server. Never logged.
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	Token    string `yaml:"token"`
	// NKeyFile is a path to an nkey seed file. Empty: none.
	NKeyFile string `yaml:"nkey_file"`
	// CredsFile is a path to a NATS .creds file. Empty: none.
	CredsFile string `yaml:"creds_file"`
	// TLS for an external server.
	TLS TLS `yaml:"tls"`
}

// TLS configures client TLS. All empty: no TLS unless the URL says tls://.
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Pipeline configures the worker pool.
type Pipeline struct {
	// Workers is the number of processing goroutines. Default: number of CPUs.
	Workers int `yaml:"workers"`
	// BatchSize is the most messages fetched at once. Default 500.
	BatchSize int `yaml:"batch_size"`
	// FetchWait is the longest a fetch waits for its first message. Default 200ms.
	FetchWait time.Duration `yaml:"fetch_wait"`
	// MaxInflightRecords bounds records fetched but not yet settled. Default 50000.
	MaxInflightRecords int `yaml:"max_inflight_records"`
	// MaxInflightBytes bounds their bytes. Default 16 MiB.
	MaxInflightBytes int64 `yaml:"max_inflight_bytes"`
	// ShutdownTimeout is how long graceful shutdown waits for in-flight work
	// before abandoning it for redelivery. Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// Sink configures the output socket.
type Sink struct {
	// Socket is the Unix socket path the drainer listens on. Default
	// "./sluice.sock".
	Socket string `yaml:"socket"`
	// Framing is "lines" (newline-delimited JSON) or "acked". Default "lines".
	Framing string `yaml:"framing"`
	// BackoffMin and BackoffMax bound the reconnect backoff. Defaults 50ms, 5s.
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// WriteTimeout fails a write that makes no progress for this long, and
	// the sink reconnects. Default 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxConnAge reconnects after a connection has been up this long. 0: never.
	MaxConnAge time.Duration `yaml:"max_conn_age"`
}

// Drain configures the reference drainer (sluice drain).
type Drain struct {
	// Socket is the path to listen on. Default: the same as sink.socket.
	Socket string `yaml:"socket"`
	// Out is a directory for output files, or "-" for stdout. Default "./sluice-out".
	Out string `yaml:"out"`
	// RotateBytes starts a new output file past this size. Default 64 MiB.
	RotateBytes int64 `yaml:"rotate_bytes"`
	// SocketMode is the socket file's permission bits. Default 0600.
	SocketMode uint32 `yaml:"socket_mode"`
}

// Admin configures the admin HTTP server (/metrics, /healthz, /readyz).
type Admin struct {
	// Listen address. Default "127.0.0.1:9464"; "off" disables it.
	Listen string `yaml:"listen"`
}

// Log configures logging.
type Log struct {
	// Format is "text" or "json". Default "text".
	Format string `yaml:"format"`
	// Level is "debug", "info", "warn" or "error". Default "info".
	Level string `yaml:"level"`
}
