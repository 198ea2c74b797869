package status

import "time"

// Report is what GET /status answers and `sluice status --json` prints.
type Report struct {
	At      time.Time `json:"at"`
	Version string    `json:"version"`
	Uptime  Seconds   `json:"uptime_seconds"` // since sluice run started

	Queue       Queue              `json:"queue"`
	Drainer     Drainer            `json:"drainer"`
	Records     Records            `json:"records"`
	Inflight    Gauge2             `json:"inflight"`
	Reconnects  Reconn             `json:"reconnects"`
	FlightDumps Window             `json:"flight_dumps"`
	Taps        map[string]float64 `json:"taps,omitempty"` // taps reading each stage now
	TapDropped  float64            `json:"tap_dropped"`    // records dropped for slow tap readers since start
}

// Queue is the state of the connection to the queue and its backlog.
type Queue struct {
	URL       string   `json:"url,omitempty"` // "" for the embedded server
	Stream    string   `json:"stream"`
	Connected bool     `json:"connected"`
	Backlog   *Backlog `json:"backlog,omitempty"` // nil while it cannot be read
}

// Backlog is the consumer's unfinished work (see queue.Backlog).
type Backlog struct {
	Pending          float64 `json:"pending"`     // not yet delivered
	AckPending       float64 `json:"ack_pending"` // delivered, not acknowledged
	Redelivered      float64 `json:"redelivered"` // of those, delivered more than once
	Stored           float64 `json:"stored"`      // messages in the stream (all unacknowledged)
	OldestUnackedAge Seconds `json:"oldest_unacked_age_seconds"`
}

// Drainer is the state of the connection to the drainer.
type Drainer struct {
	Socket    string `json:"socket"`
	Framing   string `json:"framing"`
	Connected bool   `json:"connected"`
	// Window is the acked framing's window of unacknowledged frames
	// (Records counts frames); nil in lines framing.
	Window *Gauge2 `json:"window,omitempty"`
	// AckLatency is the time from a frame's write to its ACK over the last
	// minute; nil in lines framing.
	AckLatency *Latency `json:"ack_latency,omitempty"`
	// CommittedNote says why the drainer's commit point is not shown.
	CommittedNote string `json:"committed"`
}

// Records counts records through the pipeline.
type Records struct {
	Total Counts `json:"total"`
	// PerSecond is the rate over the last RateWindow seconds; nil just
	// after start, before the first snapshot.
	PerSecond  *Counts `json:"per_second,omitempty"`
	RateWindow Seconds `json:"rate_window_seconds"`
}

// Counts is records in (off the queue), out (delivered), dropped by a
// filter and dead-lettered.
type Counts struct {
	In           float64 `json:"in"`
	Out          float64 `json:"out"`
	Dropped      float64 `json:"dropped"`
	DeadLettered float64 `json:"dead_lettered"`
}

// Gauge2 is a count of records (or frames) and bytes against their limits
// (0: no limit known).
type Gauge2 struct {
	Records    float64 `json:"records"`
	MaxRecords float64 `json:"max_records"`
	Bytes      float64 `json:"bytes"`
	MaxBytes   float64 `json:"max_bytes"`
}

// Latency is percentiles of a latency, and how many observations they are
// of; the percentiles are null (NaN) with none.
type Latency struct {
	P50   Seconds `json:"p50_seconds"`
	P90   Seconds `json:"p90_seconds"`
	P99   Seconds `json:"p99_seconds"`
	Count float64 `json:"count"`
}

// Reconn is the reconnects of the sink, in total and over the last minute.
type Reconn struct {
	Total      float64  `json:"total"`
	LastMinute float64  `json:"last_minute"`
	ByReason   []Reason `json:"by_reason"` // reasons seen since start, by name
}

// Reason is the reconnects of one reason.
type Reason struct {
	Reason     string  `json:"reason"`
	Total      float64 `json:"total"`
	LastMinute float64 `json:"last_minute"`
}

// Window is a count in total and over the last minute.
type Window struct {
	Total      float64 `json:"total"`
	LastMinute float64 `json:"last_minute"`
}
