package drain

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Reasons a connection was closed by the drainer, used in the reason label of
// sluice_drain_conn_errors_total and in logs.
const (
	ReasonLineTooLong = "line_too_long" // a line exceeded Options.MaxLine
	ReasonRead        = "read_error"    // reading the socket failed (not EOF)
	ReasonOutput      = "output_error"  // the output could not be written
	ReasonInjected    = "injected"      // the drain.write.before fault point fired an error
	ReasonPeerUID     = "peer_uid"      // the peer's user id is not in Options.PeerUIDs
)

var reasons = []string{ReasonLineTooLong, ReasonRead, ReasonOutput, ReasonInjected, ReasonPeerUID}

type metrics struct {
	open       prometheus.Gauge
	conns      prometheus.Counter
	records    prometheus.Counter
	bytes      prometheus.Counter
	torn       prometheus.Counter
	connErrors *prometheus.CounterVec
	rotated    prometheus.Counter
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
	for _, r := range reasons {
		m.connErrors.WithLabelValues(r) // export zeros
	}
	return m
}
