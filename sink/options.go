package sink

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/wire"
)

// Options configures a Writer. The zero value of each field means its
// default.
type Options struct {
	// Path is the Unix socket the drainer listens on. Required.
	Path string
	// BackoffMin is the shortest wait between failed dials, and the floor of
	// every jittered wait. 0: 50ms.
	BackoffMin time.Duration
	// BackoffMax caps the wait between failed dials. 0: 5s.
	BackoffMax time.Duration
	// WriteTimeout fails a write that makes no progress for this long; the
	// connection is then replaced (reason "write_timeout") and the frame is
	// retried on the next one. It also bounds each dial attempt. 0: 10s.
	WriteTimeout time.Duration
	// MaxConnAge replaces a connection after it has been up this long
	// (reason "max_age"), dialling the new one before dropping the old.
	// 0: never.
	MaxConnAge time.Duration
	// Logger receives connection events. nil: slog.Default().
	Logger *slog.Logger
	// Registerer receives the sink's metrics. nil: a private registry.
	Registerer prometheus.Registerer
	// Dial opens a connection to path. It is a test seam. nil: a
	// net.Dialer dialling "unix".
	Dial func(ctx context.Context, path string) (net.Conn, error)

	// Framing is the socket protocol: wire.FramingLines (newline-delimited
	// records, delivered once written) or wire.FramingAcked
	// (docs/protocol.md: binary frames acknowledged by the drainer once
	// durable). Any other value makes Start log and Send return an error
	// wrapping ErrUnknownFraming. "": lines.
	Framing wire.Framing
	// MaxLineBytes (lines framing) is the longest record the drainer takes
	// as one line (newline excluded; the drainer's drain.max_line_bytes). A
	// longer record would make the drainer close every connection it is
	// sent on, so Send refuses its message with an error wrapping
	// ErrRecordTooLong (and pipeline.ErrTooLarge: the pipeline
	// dead-letters it). 0: 1 MiB, the reference drainer's default.
	MaxLineBytes int
	// Instance is the producer identity sent in HELLO (acked framing), 1..255
	// bytes of UTF-8; longer names are cut. "": "<hostname>-<pid>".
	Instance string
	// Positions (acked framing) reports where the queue stands, one
	// position per stream incarnation, for the HELLO of every new
	// connection; the drainer refuses the connection (STREAM_REWOUND) when
	// a position is below what it committed of that incarnation: the queue
	// went back and its new messages would be dropped as duplicates. It is
	// called before each handshake, with a context bounded by
	// WriteTimeout; an error fails that attempt, which is retried with
	// backoff. nil: no positions, and the drainer cannot tell.
	Positions func(ctx context.Context) ([]wire.StreamPosition, error)
	// AckTimeout is how long the acked framing waits for acknowledgement
	// progress while frames are unacknowledged before it replaces the
	// connection (reason "ack_timeout") and re-sends them. 0: 10s.
	AckTimeout time.Duration
	// WindowFrames bounds the frames written and not yet acknowledged
	// (acked framing); it is also the window requested in HELLO, and the
	// effective window is the smaller of it and the drainer's WELCOME.
	// Sends wait while the window is full. 0: 64.
	WindowFrames int
	// WindowBytes bounds the bytes of the frames in the window (acked
	// framing); a single frame larger than this is let in when the window
	// is empty. 0: 8 MiB.
	WindowBytes int64
	// Notify, when set, is called on connection events so that the caller
	// can react (the CLI snapshots the flight recorder): event "reconnect"
	// with the reconnect reason, "write_error" with the reason of the failed
	// write, "ack_timeout" with "ack_timeout". It is called synchronously
	// from the sink's goroutines, possibly concurrently, and must not block.
	// nil: no calls.
	Notify func(event, reason string)
}

// DefaultMaxLineBytes is Options.MaxLineBytes's default, the reference
// drainer's line limit.
const DefaultMaxLineBytes = 1 << 20

// Events passed to Options.Notify.
const (
	EventReconnect  = "reconnect"
	EventWriteError = "write_error"
	EventAckTimeout = "ack_timeout"
)

func (o *Options) setDefaults() {
	if o.BackoffMin <= 0 {
		o.BackoffMin = 50 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Second
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = o.BackoffMin
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.MaxConnAge < 0 {
		o.MaxConnAge = 0
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Framing == "" {
		o.Framing = wire.FramingLines
	}
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = DefaultMaxLineBytes
	}
	if o.Instance == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "sluice"
		}
		o.Instance = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	o.Instance = clipIdentity(o.Instance)
	if o.AckTimeout <= 0 {
		o.AckTimeout = 10 * time.Second
	}
	if o.WindowFrames <= 0 {
		o.WindowFrames = 64
	}
	if o.WindowBytes <= 0 {
		o.WindowBytes = 8 << 20
	}
	if o.Dial == nil {
		var d net.Dialer
		o.Dial = func(ctx context.Context, path string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}
	}
}

// clipIdentity makes s a valid HELLO instance: valid UTF-8, at most
// wire.MaxIdentityLen bytes, cut at a character boundary.
func clipIdentity(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= wire.MaxIdentityLen {
		return s
	}
	n := wire.MaxIdentityLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// WithDefaults returns o with every zero field replaced by its default: the
// Options a Writer built from o runs with.
func (o Options) WithDefaults() Options {
	o.setDefaults()
	return o
}
