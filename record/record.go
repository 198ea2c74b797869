// Package record is sluice's shared vocabulary: a record, its identity, and
// the split of a queue message into records. It is a leaf: the pipeline,
// the sink, the socket protocol (package wire) and the drainer all speak it,
// and it imports nothing of sluice.
//
// A queue message carries one JSON record or several separated by '\n'.
// Each record's identity is the message's identity (its stream, the
// stream's incarnation, and the message's sequence in it) plus the record's
// index within the message. The identity is the same across redeliveries,
// reconnects and restarts, so a drainer can drop duplicates by it.
package record

import (
	"bytes"
	"iter"
)

// MsgID identifies one queue message: the unit a drainer deduplicates by,
// since the protocol never splits one message's records across frames.
type MsgID struct {
	// Stream is the name of the queue stream the message is stored in,
	// e.g. "INGEST".
	Stream string
	// Epoch tells one incarnation of Stream from the next: a stream that
	// is deleted and created again (or restored) reuses sequences 1, 2, …
	// under a new Epoch. The JetStream source uses the stream's creation
	// time in Unix nanoseconds. 0 means unknown (protocol version 1 peers).
	Epoch uint64
	// Seq is the message's sequence in its stream incarnation.
	Seq uint64
}

// ID is a record's stable identity.
type ID struct {
	Stream string // as MsgID.Stream
	Epoch  uint64 // as MsgID.Epoch
	Seq    uint64 // as MsgID.Seq
	Index  uint32 // 0-based index of the record within its message
}

// Msg returns the identity of the message the record came from.
func (id ID) Msg() MsgID { return MsgID{Stream: id.Stream, Epoch: id.Epoch, Seq: id.Seq} }

// Record is one record on its way from the queue to the drainer.
type Record struct {
	ID   ID
	Data []byte // one JSON value, no trailing newline; may alias the message payload
}

// Lines yields the records of a message payload: each '\n'-separated line
// that is not empty, with its index. Indexes count empty lines too, so a
// record's index is its line number (from 0) whatever the lines around it
// hold, and stays stable across redeliveries. The yielded slices alias data.
func Lines(data []byte) iter.Seq2[uint32, []byte] {
	return func(yield func(uint32, []byte) bool) {
		for idx := uint32(0); len(data) > 0; idx++ {
			var line []byte
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				line, data = data[:i], data[i+1:]
			} else {
				line, data = data, nil
			}
			if len(line) == 0 {
				continue
			}
			if !yield(idx, line) {
				return
			}
		}
	}
}

// Append appends the records of payload, identified under msg, to dst and
// returns the extended slice and the number of records appended. The
// records' Data alias payload.
func Append(dst []Record, msg MsgID, payload []byte) ([]Record, int) {
	n := len(dst)
	for idx, line := range Lines(payload) {
		dst = append(dst, Record{ID: ID{Stream: msg.Stream, Epoch: msg.Epoch, Seq: msg.Seq, Index: idx}, Data: line})
	}
	return dst, len(dst) - n
}
