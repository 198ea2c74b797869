package pipeline

import (
	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/tap"
)

// tapChunk offers c's records to the taps of stage s, with their message's
// subject, until no tap wants more now. Called only when Tapping(s): at
// hand-over (stage In, before a worker holds c) and after the sink took c
// (stage Out: the sink and the settler only read c.recs from then on).
func (p *Pipeline) tapChunk(s tap.Stage, c *chunk) {
	mi := 0 // c.recs are in message order
	for _, r := range c.recs {
		for mi < len(c.msgs)-1 && c.msgs[mi].ID() != r.ID.Msg() {
			mi++
		}
		if !p.opts.Tap.Offer(s, tap.Record{ID: r.ID, Subject: c.msgs[mi].Subject(), Data: r.Data}) {
			return
		}
	}
}

// tapDead offers a dead letter the dead-letter subject accepted (idx < 0:
// the whole message) to the taps of stage Dead.
func (p *Pipeline) tapDead(m Message, idx int, rec []byte, reason string) {
	id := m.ID()
	r := tap.Record{
		ID:      record.ID{Stream: id.Stream, Epoch: id.Epoch, Seq: id.Seq},
		Whole:   idx < 0,
		Subject: m.Subject(),
		Data:    rec,
		Reason:  reason,
	}
	if idx >= 0 {
		r.ID.Index = uint32(idx)
	}
	p.opts.Tap.Offer(tap.Dead, r)
}
