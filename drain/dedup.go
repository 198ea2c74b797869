package drain

import (
	"slices"
	"sort"
)

// msgKey identifies a queue message: the unit of deduplication. The protocol
// sends all records of one message in one DATA frame, so once one frame's
// records of (stream, seq) are durable, any later record with that key is a
// duplicate.
type msgKey struct {
	stream string
	seq    uint64
}

// span is a closed range of sequences [lo, hi], all committed.
type span struct{ lo, hi uint64 }

// streamSeen is what the drainer remembers of one stream: every sequence up
// to and including low is committed, and so is every sequence in spans.
// spans are sorted, disjoint, not adjacent to each other, and all above
// low+1 (a span that reaches low+1 is merged into low).
type streamSeen struct {
	low   uint64
	spans []span
}

// dedupState is the set of committed messages, per stream, bounded by
// maxSpans spans per stream. It is owned by the committer goroutine (and by
// Listen's recovery before that starts); it has no lock.
type dedupState struct {
	maxSpans int
	streams  map[string]*streamSeen
	evicted  uint64 // spans forgotten because of maxSpans, since start
}

func newDedupState(maxSpans int) *dedupState {
	return &dedupState{maxSpans: maxSpans, streams: map[string]*streamSeen{}}
}

// has reports whether k is committed.
func (d *dedupState) has(k msgKey) bool {
	s := d.streams[k.stream]
	if s == nil {
		return false
	}
	if k.seq <= s.low {
		return true
	}
	i := sort.Search(len(s.spans), func(i int) bool { return s.spans[i].hi >= k.seq })
	return i < len(s.spans) && s.spans[i].lo <= k.seq
}

// add records k as committed. When the stream then holds more than maxSpans
// spans, the lowest span is forgotten: its messages count as new again (a
// redelivery of one of them is written a second time, never dropped). It
// reports how many spans were forgotten.
func (d *dedupState) add(k msgKey) (evicted int) {
	s := d.streams[k.stream]
	if s == nil {
		s = &streamSeen{}
		d.streams[k.stream] = s
	}
	if k.seq <= s.low {
		return 0
	}
	if k.seq == s.low+1 {
		s.low = k.seq
		if len(s.spans) > 0 && s.spans[0].lo == s.low+1 {
			s.low = s.spans[0].hi
			s.spans = slices.Delete(s.spans, 0, 1)
		}
		return 0
	}
	// First span that ends at or after seq-1: the only one seq can touch
	// from below; the one after it may touch from above.
	i := sort.Search(len(s.spans), func(i int) bool { return s.spans[i].hi+1 >= k.seq })
	switch {
	case i < len(s.spans) && s.spans[i].lo <= k.seq && k.seq <= s.spans[i].hi:
		return 0 // already there
	case i < len(s.spans) && s.spans[i].hi+1 == k.seq:
		s.spans[i].hi = k.seq
		if i+1 < len(s.spans) && s.spans[i+1].lo == k.seq+1 {
			s.spans[i].hi = s.spans[i+1].hi
			s.spans = slices.Delete(s.spans, i+1, i+2)
		}
		return 0
	case i < len(s.spans) && s.spans[i].lo == k.seq+1:
		s.spans[i].lo = k.seq
		return 0
	}
	s.spans = slices.Insert(s.spans, i, span{k.seq, k.seq})
	for len(s.spans) > d.maxSpans {
		s.spans = slices.Delete(s.spans, 0, 1)
		d.evicted++
		evicted++
	}
	return evicted
}

// entries returns the number of spans held, over all streams, plus one per
// stream: the measure that maxSpans bounds per stream.
func (d *dedupState) entries() int {
	n := 0
	for _, s := range d.streams {
		n += 1 + len(s.spans)
	}
	return n
}
