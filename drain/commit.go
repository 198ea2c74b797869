package drain

import (
	"fmt"
	"time"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/ledger"
	"github.com/sluice-dev/sluice/record"
)

// commitAfterWrite is hit after a group commit's records were written and
// fsynced, before the dedup journal records them: the window in which a
// crash leaves records in the output that are not committed.
var commitAfterWrite = fault.Register("drain.commit.after_write", "drainer (acked): after a group commit's output write and fsync, before the journal commit (delay: late acks; error: the drainer fails here as if it crashed)")

// testHookAfterWrite, when set, runs at the same place as commitAfterWrite
// (export_test.go).
var testHookAfterWrite func()

// maxBatch bounds the frames of one group commit.
const maxBatch = 1024

// pending is one DATA frame on its way from its connection to the committer
// and back. The connection fills it and hands it over; the committer sets
// err and passes it to the connection's acker.
type pending struct {
	c     *ackedConn
	id    uint64          // frame id
	keys  []record.MsgID  // message of each record
	recs  []record.Record // the frame's records, detached from the reader; nil when rendered into lines
	lines []byte          // every record rendered as an output line (with a prefix only)
	ends  []int           // ends[i] is where record i's line ends in lines
	err   error           // set by the committer: nil when the frame is durable
	rb    *renderBuf      // where keys, recs, ends and lines came from; nil once released
}

// release gives p's buffers back to renderPool. The committer calls it once
// the group commit that took p is over: keys, ends and lines are not used
// after that (the acker needs only id and err).
func (p *pending) release() {
	rb := p.rb
	if rb == nil {
		return
	}
	rb.keys = p.keys[:0]
	if p.lines != nil {
		rb.ends, rb.lines = p.ends[:0], p.lines[:0]
	}
	clear(rb.recs) // let go of the streams' names
	p.keys, p.recs, p.ends, p.lines, p.rb = nil, nil, nil, nil, nil
	if cap(rb.body) > maxPooledBody {
		rb.body = nil
	}
	renderPool.Put(rb)
}

// maxPooledBody caps the frame bodies kept for reuse, so that one large
// frame does not pin its memory.
const maxPooledBody = 8 << 20

// committer is the one goroutine that writes acked records: it takes the
// frames waiting from every connection as one batch, drops the records of
// messages already committed, writes the rest, fsyncs the output, records
// the batch in the dedup journal and fsyncs that, and only then hands the
// frames back for acknowledgement. Everything below is owned by it.
type committer struct {
	s       *Server
	out     *output        // nil with a Store
	store   Store          // Options.Store; nil: out
	l       *ledger.Ledger // the dedup state; journaled in the output directory, in memory only for stdout
	reqs    chan *pending  // closed by shutdown once every connection ended
	admits  chan *admission
	done    chan struct{}  // closed when run returns
	failed  error          // sticky: nothing is committed after a failure
	keys    []record.MsgID // scratch: the batch's new messages
	lines   [][]byte       // scratch: the batch's records to write, from detached frames
	inBatch map[record.MsgID]struct{}
	inFrame map[record.MsgID]struct{}
}

func (cm *committer) run() {
	defer close(cm.done)
	batch := make([]*pending, 0, maxBatch)
	for {
		var p *pending
		select {
		case a := <-cm.admits:
			a.err <- cm.admit(a)
			continue
		case q, ok := <-cm.reqs:
			if !ok {
				cm.l.Close()
				return
			}
			p = q
		}
		batch = append(batch[:0], p)
	more:
		for len(batch) < maxBatch {
			select {
			case q, ok := <-cm.reqs:
				if !ok {
					break more
				}
				batch = append(batch, q)
			default:
				break more
			}
		}
		err := cm.commit(batch)
		for _, p := range batch {
			p.release()
			p.err = err
			p.c.acks <- p // never blocks: the window bounds a connection's frames
		}
	}
}

// commit makes batch durable; on error nothing of it is acknowledged.
func (cm *committer) commit(batch []*pending) error {
	if cm.failed != nil {
		return cm.failed
	}
	s := cm.s
	if err := writeBefore.Hit(s.ctx); fault.IsInjected(err) {
		return fmt.Errorf("drain: dropped a group commit of %d frames: %w", len(batch), err)
	}
	clear(cm.inBatch)
	cm.keys = cm.keys[:0]
	var records, dups, nbytes int
	for _, p := range batch {
		clear(cm.inFrame)
		start, prevEnd := -1, 0 // start of the current run of kept lines
		var last record.MsgID
		lastKeep, haveLast := false, false
		for i, k := range p.keys {
			keep := lastKeep
			if !haveLast || k != last {
				_, fresh := cm.inFrame[k]
				switch {
				case fresh:
					keep = true
				case cm.l.Has(k):
					keep = false
				default:
					_, dup := cm.inBatch[k]
					keep = !dup
					if keep {
						cm.inFrame[k] = struct{}{}
						cm.keys = append(cm.keys, k)
					}
				}
				last, lastKeep, haveLast = k, keep, true
			}
			switch {
			case keep && cm.store != nil:
				records++
				r := p.recs[i]
				// Capped: a Store may append to Data without touching the next payload.
				r.Data = r.Data[:len(r.Data):len(r.Data)]
				if err := cm.store.Append(r); err != nil {
					return cm.fail(fmt.Errorf("drain: store: %w", err))
				}
				nbytes += len(r.Data)
			case keep && p.recs != nil:
				records++
				cm.lines = append(cm.lines, p.recs[i].Data)
				nbytes += len(p.recs[i].Data) + 1
			case keep:
				records++
				if start < 0 {
					start = prevEnd
				}
			default:
				dups++
				if start >= 0 {
					if err := cm.write(p.lines[start:prevEnd]); err != nil {
						return err
					}
					nbytes += prevEnd - start
					start = -1
				}
			}
			if p.ends != nil {
				prevEnd = p.ends[i]
			}
		}
		if start >= 0 {
			if err := cm.write(p.lines[start:prevEnd]); err != nil {
				return err
			}
			nbytes += prevEnd - start
		}
		for k := range cm.inFrame {
			cm.inBatch[k] = struct{}{}
		}
	}
	if len(cm.lines) > 0 {
		err := cm.out.writeLines(cm.lines)
		clear(cm.lines) // let go of the frames' bodies
		cm.lines = cm.lines[:0]
		if err != nil {
			return cm.fail(err)
		}
	}
	if records > 0 {
		t0 := time.Now()
		var point ledger.Point
		var err error
		if cm.store != nil {
			if point, err = cm.store.Commit(); err != nil {
				err = fmt.Errorf("drain: store: commit: %w", err)
			}
		} else {
			point, err = cm.out.sync()
		}
		if err != nil {
			return cm.fail(err)
		}
		if testHookAfterWrite != nil {
			testHookAfterWrite()
		}
		if err := commitAfterWrite.Hit(s.ctx); fault.IsInjected(err) {
			return cm.fail(fmt.Errorf("drain: injected failure between the output write and the journal commit (drain.commit.after_write): %w", err))
		}
		evicted, err := cm.l.Commit(point, cm.keys)
		if err != nil {
			return cm.fail(err)
		}
		s.m.fsync.Observe(time.Since(t0).Seconds())
		if evicted > 0 {
			s.m.evicted.Add(float64(evicted))
		}
		s.m.dedupSpans.Set(float64(cm.l.Entries()))
	}
	s.m.commitSize.Observe(float64(len(batch)))
	s.m.frames.Add(float64(len(batch)))
	s.m.records.Add(float64(records))
	s.m.bytes.Add(float64(nbytes))
	if dups > 0 {
		s.m.duplicates.Add(float64(dups))
	}
	return nil
}

func (cm *committer) write(p []byte) error {
	if err := cm.out.write(p); err != nil {
		return cm.fail(err)
	}
	return nil
}

// fail makes err sticky and fails the Server: the output or the journal can
// no longer be trusted to match the acknowledgements.
func (cm *committer) fail(err error) error {
	cm.failed = err
	cm.s.fail(err)
	return err
}
