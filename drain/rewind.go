package drain

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/sluice-dev/sluice/ledger"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/wire"
)

// Outcomes of a rewind check, the label of sluice_drain_rewinds_total.
const (
	rewindRefused  = "refused"
	rewindAccepted = "accepted"
)

// admission is one connection's rewind check of its HELLO's stream
// positions. It runs on the committer, which owns the ledger, so a check
// never races a commit or another check.
type admission struct {
	c         *ackedConn
	positions []wire.StreamPosition
	err       chan error // buffered: the committer never waits for the connection
}

// admit runs the rewind check of positions on the committer and returns
// its verdict: nil, or a *wire.ProtocolError with wire.CodeStreamRewound.
func (ac *ackedConn) admit(positions []wire.StreamPosition) error {
	if len(positions) == 0 {
		return nil
	}
	a := &admission{c: ac, positions: positions, err: make(chan error, 1)}
	ac.s.admits <- a // the committer outlives every connection
	return <-a.err
}

// admit checks each stream position against the ledger (docs/protocol.md,
// section 6). A position below the committed sequence of its incarnation,
// or an incarnation fenced by an earlier refusal, is a rewind: refused and
// fenced durably, or, with Options.AcceptRewind, accepted by forgetting the
// committed sequences above the queue's last one. An error writing the
// fence or the forgotten state fails the Server, as a failed commit does:
// a refusal the drainer cannot remember is a silent loss later.
func (cm *committer) admit(a *admission) error {
	if cm.failed != nil {
		return cm.failed
	}
	s, log := cm.s, a.c.log
	for _, p := range a.positions {
		fence, fenced := cm.l.Fenced(p.Stream, p.Epoch)
		if !fenced {
			top, ok := cm.l.Committed(p.Stream, p.Epoch)
			if !ok || p.LastSeq >= top {
				continue
			}
			fence = ledger.Rewind{Stream: p.Stream, Epoch: p.Epoch, LastSeq: p.LastSeq, Committed: top, Detected: time.Now().UTC()}
		}
		attrs := []any{obs.KeyStream, fence.Stream, obs.KeyEpoch, fence.Epoch, obs.KeyLastSeq, fence.LastSeq, obs.KeyCommitted, fence.Committed}
		if s.opts.AcceptRewind {
			if err := cm.l.Forget(fence.Stream, fence.Epoch, fence.LastSeq); err != nil {
				return cm.fail(fmt.Errorf("drain: accept the rewind of stream %q epoch %d: %w", fence.Stream, fence.Epoch, err))
			}
			s.m.rewinds.WithLabelValues(rewindAccepted).Inc()
			s.m.dedupSpans.Set(float64(cm.l.Entries()))
			log.Warn("accepted a rewind of the queue (--accept-rewind): forgot the sequences committed above the queue's last one, so its new messages with them are written; the records of the lost messages stay in the output. Turn --accept-rewind off again",
				attrs...)
			continue
		}
		if !fenced {
			if err := cm.l.Fence(fence); err != nil {
				return cm.fail(fmt.Errorf("drain: record the refused rewind of stream %q epoch %d: %w", fence.Stream, fence.Epoch, err))
			}
		}
		s.m.rewinds.WithLabelValues(rewindRefused).Inc()
		rerr := &wire.RewoundError{Position: wire.StreamPosition{Stream: fence.Stream, Epoch: fence.Epoch, LastSeq: fence.LastSeq}, Committed: fence.Committed}
		s.logLimitedWith(log, "rewind", slog.LevelError, "refused a producer: the queue's stream went back below what this drainer committed (messages were lost from the queue); nothing of it is written until the rewind is accepted with sluice drain --accept-rewind",
			append(attrs, obs.KeyErr, rerr)...)
		return &wire.ProtocolError{Code: wire.CodeStreamRewound, Msg: "stream position below the committed sequence", Err: rerr}
	}
	return nil
}

// logFences says at start which stream incarnations are fenced, and what
// becomes of them.
func (s *Server) logFences(l *ledger.Ledger) {
	for _, r := range l.Fences() {
		attrs := []any{obs.KeyStream, r.Stream, obs.KeyEpoch, r.Epoch, obs.KeyLastSeq, r.LastSeq, obs.KeyCommitted, r.Committed, obs.KeyFile, ledger.RewindName}
		if s.opts.AcceptRewind {
			s.log.Warn("a refused rewind of this stream will be accepted when its producer connects (--accept-rewind)", attrs...)
		} else {
			s.log.Error("a rewind of this stream was refused: its producer is refused until the rewind is accepted (sluice drain --accept-rewind)", attrs...)
		}
	}
}
