package drain

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Reasons a connection was closed by the drainer, used in the reason label of
// sluice_drain_conn_errors_total and in logs.
const (
	ReasonLineTooLong = "line_too_long"     // a line exceeded Options.MaxLine
	ReasonRead        = "read_error"        // reading the socket failed (not EOF)
	ReasonOutput      = "output_error"      // the output could not be written
	ReasonInjected    = "injected"          // the drain.write.before fault point fired an error
	ReasonPeerUID     = "peer_uid"          // the peer's user id is not in Options.PeerUIDs (nor its gid in PeerGIDs)
	ReasonProtocol    = "protocol_error"    // acked: the peer broke the protocol (code in sluice_drain_protocol_errors_total)
	ReasonSlowPeer    = "slow_peer"         // acked: no complete frame within Options.FrameTimeout
	ReasonAckTimeout  = "ack_write_timeout" // acked: an ACK could not be written within Options.AckWriteTimeout
	ReasonTruncated   = "truncated_frame"   // acked: the connection ended inside a frame
	ReasonWrite       = "write_error"       // acked: writing to the socket failed
)

var reasons = []string{ReasonLineTooLong, ReasonRead, ReasonOutput, ReasonInjected, ReasonPeerUID,
	ReasonProtocol, ReasonSlowPeer, ReasonAckTimeout, ReasonTruncated, ReasonWrite}

type metrics struct {
	open       prometheus.Gauge
	conns      prometheus.Counter
	records    prometheus.Counter
	bytes      prometheus.Counter
	torn       prometheus.Counter
	connErrors *prometheus.CounterVec
	rotated    prometheus.Counter

	frames      prometheus.Counter
	duplicates  prometheus.Counter
	fsync       prometheus.Histogram
	commitSize  prometheus.Histogram
	refused     prometheus.Counter
	protoErrors *prometheus.CounterVec
	dedupSpans  prometheus.Gauge
	evicted     prometheus.Counter
	rewinds     *prometheus.CounterVec
}

// newMetrics registers the drainer's metrics on reg (nil: a private
// registry, so several Servers can live in one process).
func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	m := &metrics{
		open: f.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_drain_connections",
			Help: "Connections to the drainer currently open.",
		}),
		conns: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_drain_connections_total",
			Help: "Connections accepted by the drainer since start.",
		}),
		records: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_drain_records_total",
			Help: "Records (complete lines) written to the output.",
		}),
		bytes: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_drain_bytes_total",
			Help: "Bytes of complete lines written to the output, newlines included.",
		}),
		torn: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_drain_torn_lines_total",
			Help: "Partial lines discarded because the connection ended before their newline.",
		}),
		connErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_drain_conn_errors_total",
			Help: "Connections the drainer closed because of an error, by reason.",
		}, []string{"reason"}),
		rotated: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_drain_files_rotated_total",
			Help: "Output files closed because they reached rotate_bytes.",
		}),
	}
	m.frames = f.NewCounter(prometheus.CounterOpts{
		Name: "sluice_drain_frames_total",
		Help: "DATA frames received and acknowledged (acked framing).",
	})
	m.duplicates = f.NewCounter(prometheus.CounterOpts{
		Name: "sluice_drain_duplicates_total",
		Help: "Records dropped because their message was already committed (acked framing).",
	})
	m.fsync = f.NewHistogram(prometheus.HistogramOpts{
		Name:    "sluice_drain_fsync_seconds",
		Help:    "Time to make one group commit durable: output fsync plus journal fsync (acked framing).",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
	})
	m.commitSize = f.NewHistogram(prometheus.HistogramOpts{
		Name:    "sluice_drain_commit_frames",
		Help:    "DATA frames made durable by one group commit (acked framing).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	})
	m.refused = f.NewCounter(prometheus.CounterOpts{
		Name: "sluice_drain_refused_peers_total",
		Help: "Connections refused because the peer's uid/gid is not allowed.",
	})
	m.protoErrors = f.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_drain_protocol_errors_total",
		Help: "Acked connections closed because the peer broke the protocol, by close code.",
	}, []string{"code"})
	m.dedupSpans = f.NewGauge(prometheus.GaugeOpts{
		Name: "sluice_drain_dedup_entries",
		Help: "Entries of the dedup state: one per stream plus one per range of committed sequences (acked framing).",
	})
	m.evicted = f.NewCounter(prometheus.CounterOpts{
		Name: "sluice_drain_dedup_evicted_total",
		Help: "Ranges of committed sequences forgotten because a stream passed the dedup bound; their redeliveries would be written again.",
	})
	m.rewinds = f.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_drain_rewinds_total",
		Help: "Producer connections whose queue stream went back below what the drainer committed (acked framing), by outcome: refused (STREAM_REWOUND, the default) or accepted (--accept-rewind).",
	}, []string{"outcome"})
	for _, o := range []string{rewindRefused, rewindAccepted} {
		m.rewinds.WithLabelValues(o)
	}
	for _, r := range reasons {
		m.connErrors.WithLabelValues(r) // export zeros
	}
	return m
}
