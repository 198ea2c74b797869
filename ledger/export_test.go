package ledger

import (
	"bytes"
	"fmt"
	"strings"
)

// DecodeJournal replays the journal bytes b as Open does (with the default
// dedup bound) and returns a canonical dump of the state it reached (the
// commit point and every incarnation's low-water mark and ranges), that
// state encoded as one snapshot in the current version, and where the
// valid records of b end. ok is false when b holds no valid snapshot to
// start from.
func DecodeJournal(b []byte) (dump string, snapshot []byte, valid int64, ok bool, err error) {
	r := &replay{d: newState(DefaultDedupSpans)}
	valid, err = journalRecords(bytes.NewReader(b), r.apply)
	if err != nil || r.version == 0 {
		return "", nil, valid, false, err
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "point %q %d\n", r.point.File, r.point.Length)
	for _, k := range r.d.sortedKeys() {
		s := r.d.streams[k]
		fmt.Fprintf(&sb, "%q/%d low %d spans %v\n", k.stream, k.epoch, s.low, s.spans)
	}
	return sb.String(), appendSnapshot(nil, r.point, r.d), valid, true, nil
}
