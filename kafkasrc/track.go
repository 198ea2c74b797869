package kafkasrc

import "sort"

// partitionTrack follows one assigned partition's records from fetch to
// commit. Kafka commits one offset per partition, meaning "every record
// below is done", while the pipeline settles records out of order; so the
// committable offset is the end of the contiguous prefix of delivered
// records, and it never passes a record that was fetched and not yet
// delivered.
//
// The records are tracked in fetch order, which is offset order (a
// partition is read forwards; a record nak'ed is redelivered from memory,
// not fetched again). Offsets may have gaps (compaction, transaction
// markers): the prefix only counts records that were fetched.
//
// A partitionTrack is guarded by its Source's mu.
type partitionTrack struct {
	topic     string
	partition int32
	pending   []entry // fetched and not yet in the committable prefix, by offset
	commit    int64   // the committable offset: every fetched record below it is delivered; -1: none yet
	epoch     int32   // leader epoch of the record just below commit
	sent      int64   // the offset last handed to a commit; -1: none
}

// entry is one fetched record.
type entry struct {
	offset int64
	epoch  int32 // leader epoch the record was written in
	done   bool  // delivered (or dead-lettered, or filtered out)
}

func newPartitionTrack(topic string, partition int32) *partitionTrack {
	return &partitionTrack{topic: topic, partition: partition, commit: -1, sent: -1}
}

// add tracks a fetched record. It returns false, and tracks nothing, when
// offset is not above every record tracked or committable so far: a record
// fetched again (the pipeline must not see it twice, and its first copy is
// already tracked or delivered).
func (p *partitionTrack) add(offset int64, epoch int32) bool {
	if n := len(p.pending); n > 0 && offset <= p.pending[n-1].offset {
		return false
	}
	if offset < p.commit {
		return false
	}
	p.pending = append(p.pending, entry{offset: offset, epoch: epoch})
	return true
}

// done marks the record at offset delivered and moves the committable
// offset over the delivered prefix. It reports whether the committable
// offset moved. An offset not tracked is ignored.
func (p *partitionTrack) done(offset int64) bool {
	i := sort.Search(len(p.pending), func(i int) bool { return p.pending[i].offset >= offset })
	if i == len(p.pending) || p.pending[i].offset != offset {
		return false
	}
	p.pending[i].done = true
	if i != 0 {
		return false
	}
	k := 0
	for k < len(p.pending) && p.pending[k].done {
		k++
	}
	last := p.pending[k-1]
	p.commit, p.epoch = last.offset+1, last.epoch
	p.pending = append(p.pending[:0], p.pending[k:]...)
	return true
}

// dirty reports whether the committable offset is past the last one sent.
func (p *partitionTrack) dirty() bool { return p.commit > p.sent }
