package kafkasrc

import (
	"math/rand/v2"
	"testing"
)

// TestPartitionTrack_NeverPastUndelivered settles fetched records in random
// orders and checks, after each settlement, that the committable offset is
// exactly the end of the delivered prefix: never past a record fetched and
// not yet delivered, and never behind a fully delivered prefix.
func TestPartitionTrack_NeverPastUndelivered(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		tr := newPartitionTrack("t", 0)
		// Offsets with gaps, as compaction and transaction markers leave.
		var offsets []int64
		next := int64(rng.IntN(5))
		for range 50 {
			offsets = append(offsets, next)
			next += 1 + int64(rng.IntN(3))
		}
		for _, o := range offsets {
			if !tr.add(o, 3) {
				t.Fatalf("seed %d: add(%d) refused a new offset", seed, o)
			}
		}
		delivered := make(map[int64]bool)
		for _, i := range rng.Perm(len(offsets)) {
			tr.done(offsets[i])
			delivered[offsets[i]] = true
			want := int64(-1)
			for _, o := range offsets {
				if !delivered[o] {
					break
				}
				want = o + 1
			}
			if tr.commit != want {
				t.Fatalf("seed %d: after delivering %d: committable offset %d, want %d (delivered %v)", seed, offsets[i], tr.commit, want, delivered)
			}
			for _, o := range offsets {
				if o < tr.commit && !delivered[o] {
					t.Fatalf("seed %d: committable offset %d passes undelivered offset %d", seed, tr.commit, o)
				}
			}
		}
		if len(tr.pending) != 0 || tr.commit != offsets[len(offsets)-1]+1 || tr.epoch != 3 {
			t.Fatalf("seed %d: all delivered: pending %d, commit %d epoch %d; want 0, %d, 3", seed, len(tr.pending), tr.commit, tr.epoch, offsets[len(offsets)-1]+1)
		}
	}
}

func TestPartitionTrack_Cases(t *testing.T) {
	tr := newPartitionTrack("t", 1)
	for o := int64(10); o < 15; o++ {
		tr.add(o, 0)
	}
	if tr.done(11) || tr.commit != -1 {
		t.Fatalf("delivering 11 before 10 moved the commit to %d", tr.commit)
	}
	if tr.done(99) {
		t.Fatal("an offset never fetched moved the commit")
	}
	if !tr.done(10) || tr.commit != 12 {
		t.Fatalf("after 10 and 11: commit %d, want 12", tr.commit)
	}
	if !tr.dirty() {
		t.Fatal("a moved commit is not dirty")
	}
	tr.sent = tr.commit
	if tr.dirty() {
		t.Fatal("a sent commit is still dirty")
	}
	if tr.add(11, 0) || tr.add(13, 0) {
		t.Fatal("a record fetched again was tracked twice")
	}
	tr.done(14)
	if tr.commit != 12 {
		t.Fatalf("with 12 and 13 undelivered: commit %d, want 12", tr.commit)
	}
	tr.done(13)
	tr.done(12)
	if tr.commit != 15 {
		t.Fatalf("all delivered: commit %d, want 15", tr.commit)
	}
	if !tr.add(15, 0) {
		t.Fatal("the next offset was refused")
	}
}
