package load

import (
	"fmt"
	"math/bits"
	"strconv"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histogram bounds, in microseconds: 1 µs to 1 h, 3 significant
// digits. Values outside are clamped.
const (
	histMin    = 1
	histMax    = int64(time.Hour / time.Microsecond)
	histDigits = 3
	maxListed  = 10 // ids listed in Report.LostIDs and Report.DuplicateIDs
)

// Verifier accounts for the records of one run seen downstream. It is safe
// for concurrent use: Observe parses outside the lock and takes a mutex only
// to update the counters. Mark records that are not expected (MarkInvalid,
// MarkInvalidFraction, MarkFailed, Expect) before the first Observe: a
// record is classified when it is observed.
type Verifier struct {
	run      string
	expected int64 // seqs 1..expected were published

	mu sync.Mutex
	// All fields below are guarded by mu.
	seen          []uint64          // bit seq-1: an intact copy of seq was observed
	invalid       []uint64          // bit seq-1: seq is an invalid record; nil until marked
	failed        []uint64          // bit seq-1: seq's publish failed; nil until marked
	lastByKey     map[string]*int64 // last seq seen per key
	hist          *hdrhistogram.Histogram
	lines         int64
	received      int64 // distinct expected seqs observed
	duplicates    int64
	dupIDs        []string
	outOfOrder    int64
	invalidLeaked int64
	failedArrived int64
	outOfRange    int64
	malformed     int64
	otherRuns     int64
	junk          int64
}

// NewVerifier returns a Verifier for run that expects the records with seq
// 1..expected (Result.MaxSeq). It allocates one bit per expected record.
func NewVerifier(runID string, expected int64) *Verifier {
	expected = max(expected, 0)
	return &Verifier{
		run:       runID,
		expected:  expected,
		seen:      make([]uint64, (expected+63)/64),
		lastByKey: make(map[string]*int64),
		hist:      hdrhistogram.New(histMin, histMax, histDigits),
	}
}

func (v *Verifier) inRange(seq int64) bool { return seq >= 1 && seq <= v.expected }

func setBit(b []uint64, seq int64) { b[(seq-1)>>6] |= 1 << (uint64(seq-1) & 63) }

func getBit(b []uint64, seq int64) bool {
	return b != nil && b[(seq-1)>>6]&(1<<(uint64(seq-1)&63)) != 0
}

func (v *Verifier) mark(dst *[]uint64, lo, hi int64) {
	lo, hi = max(lo, 1), min(hi, v.expected)
	if lo > hi {
		return
	}
	if *dst == nil {
		*dst = make([]uint64, len(v.seen))
	}
	for s := lo; s <= hi; s++ {
		setBit(*dst, s)
	}
}

// MarkInvalid records that seq was sent as an invalid record and must not
// arrive downstream (it should go to the dead-letter subject).
func (v *Verifier) MarkInvalid(seq int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.mark(&v.invalid, seq, seq)
}

// MarkInvalidFraction marks every seq that Generate, run with this run id
// and GenOptions.Invalid = fraction, made invalid.
func (v *Verifier) MarkInvalidFraction(fraction float64) {
	if fraction <= 0 {
		return
	}
	p := newInvalidPicker(v.run, fraction)
	v.mu.Lock()
	defer v.mu.Unlock()
	for s := int64(1); s <= v.expected; s++ {
		if p.invalid(s) {
			v.mark(&v.invalid, s, s)
		}
	}
}

// MarkFailed records that seqs lo..hi (inclusive) were not acknowledged by
// the queue: they are not expected, and if they arrive anyway (the ack was
// lost, not the message) they are counted in Report.FailedArrived.
func (v *Verifier) MarkFailed(lo, hi int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.mark(&v.failed, lo, hi)
}

// Expect marks the invalid and failed records of a generator run. It fails
// with ErrRunMismatch when r belongs to another run or has more records than
// the verifier expects.
func (v *Verifier) Expect(r Result) error {
	if r.RunID != v.run || r.MaxSeq > v.expected {
		return fmt.Errorf("%w: result run %q max seq %d, verifier run %q expects %d",
			ErrRunMismatch, r.RunID, r.MaxSeq, v.run, v.expected)
	}
	v.MarkInvalidFraction(r.InvalidFraction)
	for _, f := range r.FailedRanges {
		v.MarkFailed(f.First, f.Last)
	}
	return nil
}

// Observe accounts for one output line, drained at now. Lines that are not
// records are counted as junk, records of other runs as OtherRuns.
func (v *Verifier) Observe(line []byte, now time.Time) {
	if ns, rest, ok := CutReceived(line); ok {
		line, now = rest, time.Unix(0, ns)
	}
	var h header
	err := scanRecord(line, &h)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.lines++
	if err != nil {
		switch {
		case h.has&(hasRun|hasSeq) != hasRun|hasSeq:
			v.junk++
		case string(h.run) != v.run:
			v.otherRuns++
		case v.inRange(h.seq) && getBit(v.invalid, h.seq):
			v.invalidLeaked++
		default:
			v.malformed++ // one of ours, damaged on the way
		}
		return
	}
	if string(h.run) != v.run {
		v.otherRuns++
		return
	}
	seq := h.seq
	switch {
	case !v.inRange(seq):
		v.outOfRange++
		return
	case getBit(v.invalid, seq):
		v.invalidLeaked++
		return
	case getBit(v.seen, seq):
		v.duplicates++
		if len(v.dupIDs) < maxListed {
			v.dupIDs = append(v.dupIDs, string(h.id))
		}
		return
	}
	setBit(v.seen, seq)
	if getBit(v.failed, seq) {
		v.failedArrived++
		return
	}
	v.received++
	// The lookup with string(h.key) does not allocate; only a new key does.
	switch last := v.lastByKey[string(h.key)]; {
	case last == nil:
		p := new(int64)
		*p = seq
		v.lastByKey[string(h.key)] = p
	case seq > *last:
		*last = seq
	default:
		v.outOfOrder++
	}
	us := now.UnixNano()/1e3 - h.ts/1e3
	_ = v.hist.RecordValue(min(max(us, histMin), histMax))
}

// Received returns how many distinct expected records were observed intact
// so far (Report.Received), without building a whole Report.
func (v *Verifier) Received() int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.received
}

// Report returns the accounting so far. It may be called at any time.
func (v *Verifier) Report() Report {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := Report{
		RunID:         v.run,
		Published:     v.expected,
		Received:      v.received,
		Duplicates:    v.duplicates,
		DuplicateIDs:  append([]string(nil), v.dupIDs...),
		OutOfOrder:    v.outOfOrder,
		InvalidLeaked: v.invalidLeaked,
		FailedArrived: v.failedArrived,
		OutOfRange:    v.outOfRange,
		Malformed:     v.malformed,
		OtherRuns:     v.otherRuns,
		Junk:          v.junk,
		Lines:         v.lines,
	}
	var notExpected int64
	for i := range v.seen {
		var inv, fl uint64
		if v.invalid != nil {
			inv = v.invalid[i]
		}
		if v.failed != nil {
			fl = v.failed[i]
		}
		r.Invalid += int64(bits.OnesCount64(inv))
		r.Failed += int64(bits.OnesCount64(fl))
		notExpected += int64(bits.OnesCount64(inv | fl))
		if len(r.LostIDs) < maxListed {
			// Missing: expected (in range, not marked) and not seen.
			missing := ^v.seen[i] &^ (inv | fl)
			if rem := v.expected - int64(i)*64; rem < 64 {
				missing &= 1<<uint(rem) - 1
			}
			for missing != 0 && len(r.LostIDs) < maxListed {
				b := bits.TrailingZeros64(missing)
				missing &= missing - 1
				r.LostIDs = append(r.LostIDs, v.run+"-"+strconv.FormatInt(int64(i)*64+int64(b)+1, 10))
			}
		}
	}
	r.Expected = v.expected - notExpected
	r.Lost = r.Expected - r.Received
	r.Latency = Latency{
		Count: v.hist.TotalCount(),
		P50:   usDur(v.hist.ValueAtQuantile(50)),
		P90:   usDur(v.hist.ValueAtQuantile(90)),
		P99:   usDur(v.hist.ValueAtQuantile(99)),
		P999:  usDur(v.hist.ValueAtQuantile(99.9)),
		Max:   usDur(v.hist.Max()),
	}
	if r.Latency.Count > 0 {
		r.Latency.Mean = time.Duration(v.hist.Mean() * float64(time.Microsecond))
	}
	return r
}

func usDur(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// Shrink lowers the expected range to seqs 1..expected, for a verifier made
// before the run's size was known (NewVerifier with an upper bound, observing
// while the run is still going). Records observed beyond the new range stay
// counted as OutOfRange only if observed after the call. Growing is not
// allowed: Shrink with a larger value does nothing.
func (v *Verifier) Shrink(expected int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if expected < 0 || expected >= v.expected {
		return
	}
	words := (expected + 63) / 64
	trim := func(b []uint64) []uint64 {
		if b == nil {
			return nil
		}
		b = b[:words]
		if rem := expected % 64; rem != 0 {
			b[words-1] &= 1<<uint(rem) - 1
		}
		return b
	}
	v.seen, v.invalid, v.failed = trim(v.seen), trim(v.invalid), trim(v.failed)
	v.expected = expected
}
