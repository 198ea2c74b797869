package sink

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
}

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
	if o.Dial == nil {
		var d net.Dialer
		o.Dial = func(ctx context.Context, path string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}
	}
}
