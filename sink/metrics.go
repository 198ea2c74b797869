package sink

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Reasons for a reconnect, used in the reason label of
// sluice_sink_reconnects_total and in logs.
const (
	ReasonWriteError   = "write_error"   // a write failed
	ReasonWriteTimeout = "write_timeout" // a write made no progress for WriteTimeout
	ReasonPeerClosed   = "peer_closed"   // the drainer closed the connection
	ReasonMaxAge       = "max_age"       // the connection reached MaxConnAge
	ReasonRequested    = "requested"     // Reconnect was called
	// ReasonAckTimeout: acked framing, no acknowledgement progress for
	// AckTimeout while frames were unacknowledged.
	ReasonAckTimeout = "ack_timeout"
	// ReasonProtocolError: acked framing, the drainer sent a frame that
	// breaks the protocol; the sink answered with CLOSE.
	ReasonProtocolError = "protocol_error"
	// ReasonSourceReconnected: the caller's connection to the queue was
	// re-established (sluice run, acked framing), so a new session's
	// HELLO re-runs the drainer's rewind check against the queue as it is
	// now.
	ReasonSourceReconnected = "source_reconnected"
)

var reasons = []string{ReasonWriteError, ReasonWriteTimeout, ReasonPeerClosed, ReasonMaxAge, ReasonRequested,
	ReasonAckTimeout, ReasonProtocolError, ReasonSourceReconnected}

type metrics struct {
	reconnects   *prometheus.CounterVec
	requests     prometheus.Counter
	writeErrors  prometheus.Counter
	connected    prometheus.Gauge
	frames       prometheus.Counter
	records      prometheus.Counter
	bytes        prometheus.Counter
	dialFailures prometheus.Counter
	writeSeconds prometheus.Histogram

	// acked framing
	windowFrames      prometheus.Gauge
	windowBytes       prometheus.Gauge
	ackedFrames       prometheus.Counter
	resentFrames      prometheus.Counter
	ackSeconds        prometheus.Histogram
	handshakeFailures *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		reconnects: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_sink_reconnects_total",
			Help: "Connections to the drainer replaced, by reason (the first connect is not counted).",
		}, []string{"reason"}),
		requests: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_sink_reconnect_requests_total",
			Help: "Calls asking for the connection to be replaced (Reconnect: POST /sink/reconnect, the queue reconnecting). Requests made while one is pending, or while no connection is up, are merged into it, so this can exceed sluice_sink_reconnects_total{reason=\"requested\"}.",
		}),
		writeErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_sink_write_errors_total",
			Help: "Writes to the drainer's socket that failed or timed out (the frame is retried).",
		}),
		connected: f.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_sink_connected",
			Help: "1 while the sink has a usable connection to the drainer, else 0.",
		}),
		frames: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_sink_frames_total",
			Help: "Frames written whole to the drainer's socket, each write counted: a frame the acked framing re-sends on a new connection counts again (sluice_sink_resent_frames_total counts those).",
		}),
		records: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_sink_records_total",
			Help: "Records delivered, each counted once: lines framing, records of frames written whole to the socket; acked framing, records of DATA frames the drainer acknowledged.",
		}),
		bytes: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_sink_bytes_total",
			Help: "Bytes of the frames counted in sluice_sink_frames_total: re-sent frames count again.",
		}),
		dialFailures: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_sink_dial_failures_total",
			Help: "Failed attempts to connect to the drainer's socket (a connection whose acked handshake then fails is counted in sluice_sink_handshake_failures_total instead).",
		}),
		writeSeconds: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_sink_write_seconds",
			Help:    "Duration of one frame's Write call to the drainer's socket.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10),
		}),
		windowFrames: f.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_sink_window_frames",
			Help: "Frames in the acked framing's window: sent or waiting to be sent, not yet acknowledged by the drainer.",
		}),
		windowBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_sink_window_bytes",
			Help: "Bytes of the frames in the acked framing's window.",
		}),
		ackedFrames: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_sink_acked_frames_total",
			Help: "DATA frames acknowledged by the drainer (acked framing), each counted once.",
		}),
		resentFrames: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_sink_resent_frames_total",
			Help: "DATA frames written again on a new connection because the previous one ended before their acknowledgement.",
		}),
		ackSeconds: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_sink_ack_seconds",
			Help:    "Time from a DATA frame's last write to the drainer's acknowledgement of it.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 4, 10),
		}),
		handshakeFailures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_sink_handshake_failures_total",
			Help: "Connections whose acked-framing handshake failed after the connect succeeded, by close code (the drainer's CLOSE code, the sink's own check, TIMEOUT or IO); each is retried with backoff like a failed dial.",
		}, []string{"code"}),
	}
	for _, r := range reasons {
		m.reconnects.WithLabelValues(r) // export zeros
	}
	return m
}
