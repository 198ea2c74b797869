// Package status is `sluice status`: a one-screen summary of a running
// sluice, built from its Prometheus registry.
//
// In sluice run, a Sampler keeps a minute of snapshots of the registry (one
// a second) and serves GET /status on the admin server: a Report, as JSON,
// with per-second rates over the last RateWindow, counts over the last
// minute, and the state now. The client side (Fetch, Render, Watch) asks
// for it and draws it.
//
// Everything in a Report comes from metrics sluice exports, so what
// `sluice status` shows is what a dashboard would show.
package status

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/obs"
)

// RateWindow is the span over which a Report's per-second rates are
// measured (or less, just after start).
const RateWindow = 5 * time.Second

// Minute is the span of a Report's "last minute" counts.
const Minute = time.Minute

// Options configures a Sampler. Gatherer is required; the rest describes
// the running sluice for the report.
type Options struct {
	Gatherer prometheus.Gatherer
	// Interval is the time between snapshots; 0: 1s.
	Interval time.Duration
	Version  string
	Framing  string // lines or acked
	Socket   string // the drainer's socket path
	QueueURL string // the queue's URL, credentials redacted; "" for the embedded one
	Stream   string // the consumed stream
	// Limits the report shows the gauges against; 0: not shown.
	MaxInflightRecords int64
	MaxInflightBytes   int64
	WindowFrames       int64
	WindowBytes        int64
	// Start is when sluice started, for the uptime; zero: when NewSampler
	// is called.
	Start  time.Time
	Logger *slog.Logger // nil: slog.Default()
}

// Sampler keeps a minute of snapshots of a registry and serves the Report.
// Run's goroutine is the only writer of the ring; requests read it under
// mu.
type Sampler struct {
	opts  Options
	log   *slog.Logger
	start time.Time

	mu   sync.Mutex  // guards ring
	ring []*snapshot // oldest first, at most a minute and a RateWindow old
}

// NewSampler returns a sampler; call Run to start taking snapshots.
func NewSampler(opts Options) *Sampler {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Start.IsZero() {
		opts.Start = time.Now()
	}
	return &Sampler{opts: opts, log: opts.Logger.With(obs.KeyComponent, "status"), start: opts.Start}
}

// Run takes a snapshot every Interval until ctx ends. Its caller owns the
// goroutine.
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	s.sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.sample(now)
		}
	}
}

func (s *Sampler) sample(now time.Time) {
	snap, err := s.gather(now)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring = append(s.ring, snap)
	keep := now.Add(-Minute - RateWindow)
	i := 0
	for i < len(s.ring)-1 && s.ring[i].at.Before(keep) {
		i++
	}
	s.ring = slices.Delete(s.ring, 0, i)
}

func (s *Sampler) gather(now time.Time) (*snapshot, error) {
	fams, err := s.opts.Gatherer.Gather()
	if err != nil && len(fams) == 0 {
		s.log.Warn("status: gathering metrics failed", obs.KeyErr, err)
		return nil, err
	}
	return takeSnapshot(now, fams), nil
}

// before returns the newest snapshot taken at least d before now, or the
// oldest one, or nil when there is none.
func (s *Sampler) before(now time.Time, d time.Duration) *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pick *snapshot
	for _, snap := range s.ring {
		if now.Sub(snap.at) >= d || pick == nil {
			pick = snap
		}
		if now.Sub(snap.at) < d {
			break
		}
	}
	if pick != nil && !pick.at.Before(now) {
		return nil
	}
	return pick
}

// Mount serves GET /status on a: the Report, as JSON.
func (s *Sampler) Mount(a *obs.Admin) {
	a.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		rep, err := s.Report(time.Now())
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "gather metrics: " + err.Error()})
			return
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	})
}

// Report builds the report at now from a fresh Gather and the snapshots.
func (s *Sampler) Report(now time.Time) (*Report, error) {
	cur, err := s.gather(now)
	if err != nil {
		return nil, err
	}
	rateBase, minBase := s.before(now, RateWindow), s.before(now, Minute)
	o := s.opts
	r := &Report{
		At: now.UTC(), Version: o.Version, Uptime: Seconds(now.Sub(s.start).Seconds()),
		Queue: Queue{
			URL: o.QueueURL, Stream: o.Stream,
			Connected: cur.vals["sluice_queue_connected"] == 1,
		},
		Drainer: Drainer{
			Socket: o.Socket, Framing: o.Framing,
			Connected: cur.vals["sluice_sink_connected"] == 1,
			// The acked protocol's WELCOME does not carry the drainer's
			// commit point (docs/protocol.md section 4.2), so sluice
			// cannot report it.
			CommittedNote: "not reported: the acked handshake does not carry the drainer's commit point; see the drainer's output directory",
		},
		Records: Records{
			Total: Counts{
				In: cur.vals["sluice_pipeline_records_in_total"], Out: cur.vals["sluice_pipeline_records_out_total"],
				Dropped: cur.vals["sluice_pipeline_records_dropped_total"], DeadLettered: cur.vals["sluice_pipeline_dead_lettered_total"],
			},
		},
		Inflight: Gauge2{
			Records: cur.vals["sluice_pipeline_inflight_records"], MaxRecords: float64(o.MaxInflightRecords),
			Bytes: cur.vals["sluice_pipeline_inflight_bytes"], MaxBytes: float64(o.MaxInflightBytes),
		},
		FlightDumps: Window{Total: cur.vals["sluice_flight_dumps_total"], LastMinute: cur.delta(minBase, "sluice_flight_dumps_total")},
	}
	if cur.has("sluice_queue_pending_messages") {
		r.Queue.Backlog = &Backlog{
			Pending:          cur.vals["sluice_queue_pending_messages"],
			AckPending:       cur.vals["sluice_queue_ack_pending"],
			Redelivered:      cur.vals["sluice_queue_consumer_redelivered_messages"],
			Stored:           cur.vals["sluice_queue_stream_messages"],
			OldestUnackedAge: Seconds(cur.vals["sluice_queue_oldest_unacked_age_seconds"]),
		}
	}
	if rateBase != nil {
		span := now.Sub(rateBase.at).Seconds()
		r.Records.RateWindow = Seconds(span)
		r.Records.PerSecond = &Counts{
			In:           cur.delta(rateBase, "sluice_pipeline_records_in_total") / span,
			Out:          cur.delta(rateBase, "sluice_pipeline_records_out_total") / span,
			Dropped:      cur.delta(rateBase, "sluice_pipeline_records_dropped_total") / span,
			DeadLettered: cur.delta(rateBase, "sluice_pipeline_dead_lettered_total") / span,
		}
	}
	if o.Framing == "acked" {
		r.Drainer.Window = &Gauge2{
			Records: cur.vals["sluice_sink_window_frames"], MaxRecords: float64(o.WindowFrames),
			Bytes: cur.vals["sluice_sink_window_bytes"], MaxBytes: float64(o.WindowBytes),
		}
		qs, n := cur.quantiles(minBase, "sluice_sink_ack_seconds", 0.5, 0.9, 0.99)
		r.Drainer.AckLatency = &Latency{P50: Seconds(qs[0]), P90: Seconds(qs[1]), P99: Seconds(qs[2]), Count: n}
	}
	totals, last := cur.byLabel["sluice_sink_reconnects_total"], cur.deltaByLabel(minBase, "sluice_sink_reconnects_total")
	for reason, total := range totals {
		r.Reconnects.Total += total
		r.Reconnects.LastMinute += last[reason]
		if total > 0 {
			r.Reconnects.ByReason = append(r.Reconnects.ByReason, Reason{Reason: reason, Total: total, LastMinute: last[reason]})
		}
	}
	sort.Slice(r.Reconnects.ByReason, func(i, j int) bool { return r.Reconnects.ByReason[i].Reason < r.Reconnects.ByReason[j].Reason })
	for stage, n := range cur.byLabel["sluice_tap_subscribers"] {
		if n > 0 {
			if r.Taps == nil {
				r.Taps = map[string]float64{}
			}
			r.Taps[stage] = n
		}
	}
	if v, ok := cur.byLabel["sluice_tap_dropped_total"]; ok {
		for _, d := range v {
			r.TapDropped += d
		}
	}
	return r, nil
}

// Seconds is a duration in seconds that encodes to JSON as null when it is
// not a number (a percentile with no observations).
type Seconds float64

// MarshalJSON encodes s as a number, or null when s is NaN or infinite.
func (s Seconds) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(s))
}

// UnmarshalJSON decodes a number, or null as NaN.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*s = Seconds(math.NaN())
		return nil
	}
	return json.Unmarshal(b, (*float64)(s))
}
