// Package tap streams a sample of the records passing one stage of a
// running sluice, for an operator to look at: `in` (records as they come off
// the queue), `out` (records handed to the sink, after the processing
// steps) and `dead` (records accepted by the dead-letter subject, with the
// reason).
//
// The pipeline offers records to a Hub at those three points. A Hub nobody
// taps costs one atomic load per point (Tapping, see BenchmarkTapping_Off);
// a tap never slows the pipeline: each subscriber has a rate cap, applied
// before anything is copied, and a bounded buffer, and an event that finds
// the buffer full is dropped and counted, never waited for.
//
// Mount serves the hub on the admin server as GET /tap/{stage} (one JSON
// event a line); Stream is the client of that endpoint that `sluice tap`
// runs.
package tap

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluice-dev/sluice/record"
)

// Stage is a point of the pipeline where records can be tapped.
type Stage uint8

// The stages.
const (
	In   Stage = iota // records split off a queue message, before processing
	Out               // records handed to the sink, after the processing steps
	Dead              // records (or whole messages) accepted by the dead-letter subject
	numStages
)

var stageNames = [numStages]string{In: "in", Out: "out", Dead: "dead"}

// String returns the stage's name: in, out or dead.
func (s Stage) String() string {
	if s < numStages {
		return stageNames[s]
	}
	return fmt.Sprintf("stage(%d)", s)
}

// ParseStage returns the stage named name (in, out or dead).
func ParseStage(name string) (Stage, error) {
	for s, n := range stageNames {
		if n == name {
			return Stage(s), nil
		}
	}
	return 0, fmt.Errorf("%w: %q (want in, out or dead)", ErrUnknownStage, name)
}

// MaxData is the most bytes of a record an Event carries; longer records
// are cut (Event.Truncated) so that a tap of large records stays cheap.
const MaxData = 4096

// Record is a record offered to the hub. Data may alias the pipeline's
// buffers: the hub copies what it keeps before Offer returns.
type Record struct {
	ID      record.ID
	Whole   bool   // Data is a whole queue message (a dead letter with no record index)
	Subject string // the subject the queue message was published on
	Data    []byte
	Reason  string // why it was dead-lettered (stage Dead only)
}

// Event is one tapped record, as the tap endpoint sends it (one JSON object
// a line).
type Event struct {
	Time      time.Time `json:"time"`
	Stage     string    `json:"stage"`
	Stream    string    `json:"stream"`
	Epoch     uint64    `json:"epoch"`
	Seq       uint64    `json:"seq"`
	Index     int64     `json:"index"` // the record's index in its message; -1 for a whole message
	Subject   string    `json:"subject"`
	Reason    string    `json:"reason,omitempty"`
	Size      int       `json:"size"` // the record's length in bytes
	Data      string    `json:"data"` // its first MaxData bytes
	Truncated bool      `json:"truncated,omitempty"`
	// Dropped is how many events this subscription has dropped so far
	// because its reader did not keep up.
	Dropped uint64 `json:"dropped"`
}

// SubOptions configures a subscription.
type SubOptions struct {
	// Rate caps the events per second; 0 or less: DefaultRate; +Inf: no
	// cap (for tests). Events are taken at Rate per second on average, in
	// bursts of up to one second's worth (at least one event); records
	// offered past the cap are not sampled (and not counted as dropped).
	Rate float64
	// Max ends the subscription's intake after this many events; 0: no
	// limit.
	Max int
	// Buffer is the number of events held for a slow reader before new
	// ones are dropped; 0: 64.
	Buffer int
}

// DefaultRate is the rate cap of a subscription that sets none.
const DefaultRate = 10

// MaxRate is the highest rate cap the tap endpoint accepts.
const MaxRate = 10000

// Hub is where the pipeline offers records and taps subscribe. Its methods
// are safe for concurrent use; a nil *Hub is a hub nobody can tap.
type Hub struct {
	stages [numStages]hubStage
	m      *metrics
}

type hubStage struct {
	// subs is the stage's subscribers, nil when there are none: Tapping
	// loads only this. Replaced whole (copy on write) under mu.
	subs atomic.Pointer[[]*Sub]
	mu   sync.Mutex // serialises Subscribe and Close on this stage
}

// NewHub returns a hub whose metrics are registered on reg (nil: a private
// registry).
func NewHub(reg prometheus.Registerer) *Hub {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Hub{m: newMetrics(reg)}
}

// Tapping reports whether anyone taps stage s. It is one atomic load (and a
// nil check), so the pipeline calls it before building anything to Offer.
func (h *Hub) Tapping(s Stage) bool {
	return h != nil && h.stages[s].subs.Load() != nil
}

// Offer offers r to the subscribers of stage s. It never blocks: a
// subscriber whose rate cap does not allow an event now skips r, and one
// whose buffer is full drops it (counted in its Dropped and in
// sluice_tap_dropped_total). It returns false when no subscriber could take
// an event now, so a caller offering a run of records can stop early.
func (h *Hub) Offer(s Stage, r Record) bool {
	if h == nil {
		return false
	}
	subs := h.stages[s].subs.Load()
	if subs == nil {
		return false
	}
	now := time.Now()
	var ev *Event
	wanted := false
	for _, sub := range *subs {
		if !sub.allow(now) {
			continue
		}
		wanted = true
		if len(sub.ch) == cap(sub.ch) { // full: drop before building anything
			sub.dropped.Add(1)
			h.m.droppedBy[s].Inc()
			continue
		}
		if ev == nil {
			ev = newEvent(now, s, r)
		}
		e := *ev
		e.Dropped = sub.dropped.Load()
		select {
		case sub.ch <- e:
			h.m.eventsBy[s].Inc()
		default:
			sub.dropped.Add(1)
			h.m.droppedBy[s].Inc()
		}
	}
	return wanted
}

func newEvent(now time.Time, s Stage, r Record) *Event {
	data := r.Data
	trunc := len(data) > MaxData
	if trunc {
		data = data[:MaxData]
	}
	idx := int64(r.ID.Index)
	if r.Whole {
		idx = -1
	}
	return &Event{
		Time: now.UTC(), Stage: s.String(),
		Stream: r.ID.Stream, Epoch: r.ID.Epoch, Seq: r.ID.Seq, Index: idx,
		Subject: r.Subject, Reason: r.Reason,
		Size: len(r.Data), Data: string(data), Truncated: trunc,
	}
}

// Subscribe starts a subscription to stage s. The caller reads its events
// from C and must Close it.
func (h *Hub) Subscribe(s Stage, opts SubOptions) *Sub {
	if opts.Rate <= 0 {
		opts.Rate = DefaultRate
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 64
	}
	sub := &Sub{
		hub: h, stage: s, max: int64(opts.Max),
		interval: int64(math.Ceil(float64(time.Second) / opts.Rate)),
		ch:       make(chan Event, opts.Buffer),
	}
	st := &h.stages[s]
	st.mu.Lock()
	defer st.mu.Unlock()
	var next []*Sub
	if cur := st.subs.Load(); cur != nil {
		next = slices.Clone(*cur)
	}
	next = append(next, sub)
	st.subs.Store(&next)
	h.m.subscribers.WithLabelValues(s.String()).Inc()
	return sub
}

// Sub is one subscription to a stage.
type Sub struct {
	hub      *Hub
	stage    Stage
	max      int64 // immutable; 0: no limit
	interval int64 // immutable; nanoseconds between events (the rate cap)
	ch       chan Event

	next    atomic.Int64  // Unix nanoseconds at which the rate cap's next token is due
	taken   atomic.Int64  // events taken (sent or dropped), for max
	dropped atomic.Uint64 // events dropped because ch was full
	closed  atomic.Bool
}

// C returns the channel of events. It is never closed: stop reading when
// Max events came, or when done, and Close the subscription.
func (s *Sub) C() <-chan Event { return s.ch }

// Dropped returns the events dropped so far because the reader was slow.
func (s *Sub) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription; events offered afterwards do not reach it.
// It is idempotent.
func (s *Sub) Close() {
	if s.closed.Swap(true) {
		return
	}
	st := &s.hub.stages[s.stage]
	st.mu.Lock()
	defer st.mu.Unlock()
	cur := st.subs.Load()
	if cur == nil {
		return
	}
	next := slices.DeleteFunc(slices.Clone(*cur), func(x *Sub) bool { return x == s })
	if len(next) == 0 {
		st.subs.Store(nil)
	} else {
		st.subs.Store(&next)
	}
	s.hub.m.subscribers.WithLabelValues(s.stage.String()).Dec()
}

// allow takes the right to one event at now under the rate cap and Max.
func (s *Sub) allow(now time.Time) bool {
	if s.max > 0 && s.taken.Load() >= s.max {
		return false
	}
	// A token bucket holding one second's worth of events (at least one),
	// kept as the time its next token is due (GCRA): an event is allowed
	// when that time is at most a second minus one interval ahead.
	t := now.UnixNano()
	tau := max(int64(time.Second)-s.interval, 0)
	for s.interval > 0 {
		old := s.next.Load()
		due := max(old, t)
		if due-t > tau {
			return false
		}
		if s.next.CompareAndSwap(old, due+s.interval) {
			break
		}
	}
	if s.max > 0 && s.taken.Add(1) > s.max {
		return false
	}
	return true
}

type metrics struct {
	subscribers *prometheus.GaugeVec
	events      *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	// The counters of each stage, looked up once.
	eventsBy, droppedBy [numStages]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		subscribers: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_tap_subscribers",
			Help: "Taps (sluice tap, GET /tap/{stage}) currently reading a stage, by stage.",
		}, []string{"stage"}),
		events: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_tap_events_total",
			Help: "Records handed to taps, by stage (one per tap that took it).",
		}, []string{"stage"}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_tap_dropped_total",
			Help: "Records a tap's rate cap allowed but dropped because its reader was slow (the pipeline never waits for a tap), by stage.",
		}, []string{"stage"}),
	}
	for st, n := range stageNames {
		m.subscribers.WithLabelValues(n)
		m.eventsBy[st] = m.events.WithLabelValues(n)
		m.droppedBy[st] = m.dropped.WithLabelValues(n)
	}
	return m
}
