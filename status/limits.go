package status

import (
	"github.com/prometheus/client_golang/prometheus"
)

// RegisterLimits exports, on reg, the configured limits that the in-flight
// and window gauges are bounded by, so that a dashboard can draw each gauge
// against its limit as the status screen does:
//
//	sluice_config_limit{limit="inflight_records"}   pipeline.max_inflight_records
//	sluice_config_limit{limit="inflight_bytes"}     pipeline.max_inflight_bytes
//	sluice_config_limit{limit="window_frames"}      sink.window_frames (acked framing)
//	sluice_config_limit{limit="window_bytes"}       sink.window_bytes (acked framing)
//
// A limit of 0 in o is not exported. (The drainer may grant a smaller
// window than sink.window_frames; the configured one is shown.)
func RegisterLimits(reg prometheus.Registerer, o Options) error {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_config_limit",
		Help: "Configured limits the in-flight and window gauges are bounded by: inflight_records, inflight_bytes (pipeline.max_inflight_*), window_frames, window_bytes (sink.window_*, acked framing only).",
	}, []string{"limit"})
	for name, v := range map[string]int64{
		"inflight_records": o.MaxInflightRecords, "inflight_bytes": o.MaxInflightBytes,
		"window_frames": o.WindowFrames, "window_bytes": o.WindowBytes,
	} {
		if v > 0 {
			g.WithLabelValues(name).Set(float64(v))
		}
	}
	return reg.Register(g)
}
