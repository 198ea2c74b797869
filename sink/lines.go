package sink

import (
	"context"
	"errors"
	"sync"

	"github.com/sluice-dev/sluice/record"
)

// This file is the "lines" framing: a frame is its records' bytes, each
// followed by '\n', written with one Write call to one connection. Delivery
// ends at the kernel, so a frame is done once its Write returned. The
// "acked" framing is in acked.go; Send dispatches on Options.Framing.

// maxPooledFrame caps the buffers kept for reuse, so one huge frame does not
// pin its memory forever.
const maxPooledFrame = 4 << 20

var framePool = sync.Pool{New: func() any {
	b := make([]byte, 0, 64<<10)
	return &b
}}

// Send delivers recs as one frame (pipeline.Sink).
//
// Lines framing: Send writes recs as one frame of lines. It blocks while there is no
// connection, retries the whole frame on the next connection after a failed
// or partial write (a partial line left on the old connection is the
// drainer's to discard at EOF), and returns nil only once the whole frame was
// written to one connection, after calling done(nil). It returns ctx.Err()
// or ErrClosed otherwise, and then never calls done. Send is safe for
// concurrent use; frames never interleave.
//
// Acked framing: Send cuts recs into DATA frames that fit the drainer's
// limits (never splitting one queue message's records; a message too large
// for one frame is an error wrapping ErrMessageTooLarge), waits for room in
// the window, puts the frames there under the next frame ids and returns
// nil; the frames are written in id order on the current connection, and
// re-sent on the next one if it fails first. done(nil) is called once the
// drainer has acknowledged every frame of the Send, done(ErrClosed) if the
// Writer closes first (done(err wrapping ErrFrameLimits) if a new connection
// cannot take a frame in the window). Send returns ctx.Err() or ErrClosed
// while waiting for room, and then never calls done.
func (w *Writer) Send(ctx context.Context, recs []record.Record, done func(error)) error {
	if w.cfgErr != nil {
		return w.cfgErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.isClosed() {
		return ErrClosed
	}
	if len(recs) == 0 {
		done(nil)
		return nil
	}
	if w.ackd {
		return w.sendAcked(ctx, recs, done)
	}
	bp := framePool.Get().(*[]byte)
	frame := appendLines((*bp)[:0], recs)
	err := w.sendFrame(ctx, frame)
	if cap(frame) <= maxPooledFrame {
		*bp = frame[:0]
		framePool.Put(bp)
	}
	if err != nil {
		return err
	}
	n := uint64(len(frame))
	w.frames.Add(1)
	w.records.Add(uint64(len(recs)))
	w.bytes.Add(n)
	w.m.frames.Inc()
	w.m.records.Add(float64(len(recs)))
	w.m.bytes.Add(float64(n))
	done(nil)
	return nil
}

// appendLines appends each record's bytes and a '\n' to b, growing it once.
func appendLines(b []byte, recs []record.Record) []byte {
	n := 0
	for i := range recs {
		n += len(recs[i].Data) + 1
	}
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	for i := range recs {
		b = append(b, recs[i].Data...)
		b = append(b, '\n')
	}
	return b
}

// sendFrame writes frame whole to one connection, moving to the next
// connection after a failure, until it succeeds, ctx ends or w is closed.
func (w *Writer) sendFrame(ctx context.Context, frame []byte) error {
	for {
		l, err := w.acquire(ctx)
		if err != nil {
			return err
		}
		err = w.writeFrame(ctx, l, frame)
		w.release(l)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrClosed):
			return ErrClosed
		case ctx.Err() != nil:
			return ctx.Err()
		}
		// The lease is retired; acquire waits for the connector's next one.
	}
}
