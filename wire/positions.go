package wire

import "fmt"

// Committed reports the highest sequence a server has committed for one
// stream incarnation, and whether it has committed anything for it at all.
// A drainer passes its dedup ledger's method; it is called on the
// connection's goroutine during the handshake, so it must be safe to call
// while the drainer commits on other goroutines.
type Committed func(stream string, epoch uint64) (highest uint64, ok bool)

// RewoundError is a stream position below what the server committed: the
// queue went back within one incarnation of the stream (it lost the tail of
// its store in a crash, or was restored from a backup) and will hand out
// sequences again that the server already holds. Records with those
// sequences would be dropped as duplicates of different records, so the
// server refuses the session instead (CodeStreamRewound).
type RewoundError struct {
	Position  StreamPosition // the client's position
	Committed uint64         // the highest sequence the server committed for Position's stream and epoch
}

// Error names the stream, its epoch, both sequences and what an operator
// can do; the text is the reason of the CLOSE the server sends.
func (e *RewoundError) Error() string {
	p := e.Position
	return fmt.Sprintf("stream %q epoch %d went back: the queue's last sequence is %d but the drainer committed up to %d; "+
		"new messages would reuse sequences %d..%d and be dropped as duplicates. The queue lost messages (store tail lost in a crash, restore from backup). "+
		"To recover: accept the rewind (sluice drain --accept-rewind forgets the sequences above %d of that stream and epoch), or move the drainer's output directory aside; the sink keeps retrying",
		p.Stream, p.Epoch, p.LastSeq, e.Committed, p.LastSeq+1, e.Committed, p.LastSeq)
}

// Unwrap returns ErrStreamRewound.
func (e *RewoundError) Unwrap() error { return ErrStreamRewound }

// CheckPositions is the server's rewind check of a HELLO's stream
// positions (docs/protocol.md, section 6): for each position, in order, it
// asks committed for the highest sequence committed for the same stream and
// epoch, and fails on the first position whose LastSeq is below it, with a
// *ProtocolError with CodeStreamRewound wrapping a *RewoundError (so
// errors.Is(err, ErrStreamRewound) holds). A stream incarnation with nothing
// committed (a new epoch) always passes; so does every position when
// committed is nil. The server sends CloseFor(err) and must neither
// acknowledge nor drop anything of that connection's.
func CheckPositions(ps []StreamPosition, committed Committed) error {
	if committed == nil {
		return nil
	}
	for _, p := range ps {
		if top, ok := committed(p.Stream, p.Epoch); ok && p.LastSeq < top {
			return &ProtocolError{Code: CodeStreamRewound, Msg: "stream position below the committed sequence", Err: &RewoundError{Position: p, Committed: top}}
		}
	}
	return nil
}
