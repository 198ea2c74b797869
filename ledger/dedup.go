package ledger

import (
	"slices"
	"sort"

	"github.com/sluice-dev/sluice/record"
)

// incarnation names one incarnation of a stream: the dedup space its
// sequences live in. A stream created again under the same name has a new
// epoch, so its sequences 1, 2, … are new messages, not duplicates.
type incarnation struct {
	stream string
	epoch  uint64
}

func incarnationOf(id record.MsgID) incarnation { return incarnation{id.Stream, id.Epoch} }

// span is a closed range of sequences [lo, hi], all committed.
type span struct{ lo, hi uint64 }

// seen is what the ledger remembers of one stream incarnation: every
// sequence up to and including low is committed, and so is every sequence
// in spans. spans are sorted, disjoint, not adjacent to each other, and all
// above low+1 (a span that reaches low+1 is merged into low).
type seen struct {
	low   uint64
	spans []span
}

// highest returns the highest committed sequence.
func (s *seen) highest() uint64 {
	if len(s.spans) > 0 {
		return s.spans[len(s.spans)-1].hi
	}
	return s.low
}

// valid reports whether s keeps the invariants above.
func (s *seen) valid() bool {
	prev := s.low // every span must start above prev+1
	for _, sp := range s.spans {
		if sp.lo > sp.hi || prev == ^uint64(0) || sp.lo <= prev+1 {
			return false
		}
		prev = sp.hi
	}
	return true
}

// state is the set of committed messages, per stream incarnation, bounded
// by maxSpans spans per incarnation.
type state struct {
	maxSpans int
	streams  map[incarnation]*seen
}

func newState(maxSpans int) *state {
	return &state{maxSpans: maxSpans, streams: map[incarnation]*seen{}}
}

// has reports whether id is committed. Sequence 0 is reserved
// (docs/protocol.md, section 4.3): never committed, never a duplicate.
func (d *state) has(id record.MsgID) bool {
	s := d.streams[incarnationOf(id)]
	if s == nil || id.Seq == 0 {
		return false
	}
	if id.Seq <= s.low {
		return true
	}
	i := sort.Search(len(s.spans), func(i int) bool { return s.spans[i].hi >= id.Seq })
	return i < len(s.spans) && s.spans[i].lo <= id.Seq
}

// add records id as committed. When the incarnation then holds more than
// maxSpans spans, the lowest span is forgotten: its messages count as new
// again (a redelivery of one of them is written a second time, never
// dropped). It reports how many spans were forgotten.
func (d *state) add(id record.MsgID) (evicted int) {
	key, seq := incarnationOf(id), id.Seq
	if seq == 0 { // reserved: never remembered
		return 0
	}
	s := d.streams[key]
	if s == nil {
		s = &seen{}
		d.streams[key] = s
	}
	if seq <= s.low {
		return 0
	}
	if seq == s.low+1 {
		s.low = seq
		if len(s.spans) > 0 && s.spans[0].lo == s.low+1 {
			s.low = s.spans[0].hi
			s.spans = slices.Delete(s.spans, 0, 1)
		}
		return 0
	}
	// Here seq ≥ low+2 ≥ 2, so seq-1 does not wrap (hi+1 would, for a
	// span ending at the largest sequence). First span that ends at or
	// after seq-1: the only one seq can touch from below; the one after
	// it may touch from above.
	i := sort.Search(len(s.spans), func(i int) bool { return s.spans[i].hi >= seq-1 })
	switch {
	case i < len(s.spans) && s.spans[i].lo <= seq && seq <= s.spans[i].hi:
		return 0 // already there
	case i < len(s.spans) && s.spans[i].hi == seq-1:
		s.spans[i].hi = seq
		if i+1 < len(s.spans) && s.spans[i+1].lo == seq+1 {
			s.spans[i].hi = s.spans[i+1].hi
			s.spans = slices.Delete(s.spans, i+1, i+2)
		}
		return 0
	case i < len(s.spans) && s.spans[i].lo == seq+1:
		s.spans[i].lo = seq
		return 0
	}
	s.spans = slices.Insert(s.spans, i, span{seq, seq})
	for len(s.spans) > d.maxSpans {
		s.spans = slices.Delete(s.spans, 0, 1)
		evicted++
	}
	return evicted
}

// forgetAbove forgets every committed sequence of key above seq: they count
// as new again.
func (d *state) forgetAbove(key incarnation, seq uint64) {
	s := d.streams[key]
	if s == nil {
		return
	}
	s.low = min(s.low, seq)
	s.spans = slices.DeleteFunc(s.spans, func(sp span) bool { return sp.lo > seq })
	if n := len(s.spans); n > 0 && s.spans[n-1].hi > seq {
		s.spans[n-1].hi = seq
	}
	if s.low == 0 && len(s.spans) == 0 {
		delete(d.streams, key)
	}
}

// entries returns the number of spans held, over all incarnations, plus
// one per incarnation: the measure that maxSpans bounds per incarnation.
func (d *state) entries() int {
	n := 0
	for _, s := range d.streams {
		n += 1 + len(s.spans)
	}
	return n
}

// sortedKeys returns the incarnations in d by stream name, then epoch: the
// order snapshots store them in.
func (d *state) sortedKeys() []incarnation {
	keys := make([]incarnation, 0, len(d.streams))
	for k := range d.streams {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareIncarnations)
	return keys
}

func compareIncarnations(a, b incarnation) int {
	if a.stream != b.stream {
		if a.stream < b.stream {
			return -1
		}
		return 1
	}
	switch {
	case a.epoch < b.epoch:
		return -1
	case a.epoch > b.epoch:
		return 1
	}
	return 0
}
