package sink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/sluice-dev/sluice/record"
)

// lines is the "lines" framing: a frame is its records' bytes, each
// followed by '\n', written with one Write call to one connection. There is
// no handshake and no per-connection state; delivery ends at the kernel, so
// a frame is done once its Write returned. Each connection has one
// goroutine, readLoop, which only notices a drainer that went away.
type lines struct {
	w *Writer // immutable
}

// maxPooledFrame caps the buffers kept for reuse, so one huge frame does not
// pin its memory forever.
const maxPooledFrame = 4 << 20

var framePool = sync.Pool{New: func() any {
	b := make([]byte, 0, 64<<10)
	return &b
}}

// handshake does nothing: a lines connection is usable once connected.
func (*lines) handshake(context.Context, net.Conn) (any, []any, error) { return nil, nil, nil }

// start starts l's reader.
func (f *lines) start(ctx context.Context, l *lease) {
	f.w.wg.Add(1)
	go f.readLoop(ctx, l)
}

// end lets the core close the connection: a lines session has no goodbye.
func (*lines) end(*lease) bool { return false }

// close has nothing to settle: a lines Send finishes before it returns.
func (*lines) close() {}

// send writes recs as one frame of lines. It blocks while there is no
// connection, retries the whole frame on the next connection after a failed
// or partial write (a partial line left on the old connection is the
// drainer's to discard at EOF), and returns nil only once the whole frame was
// written to one connection, after calling done(nil). It returns ctx.Err(),
// ErrClosed, or (at once) ErrRecordTooLong otherwise, and then never calls
// done. Frames never
// interleave.
func (f *lines) send(ctx context.Context, recs []record.Record, done func(error)) error {
	w := f.w
	for i := range recs {
		if n := len(recs[i].Data); n > w.opts.MaxLineBytes {
			id := recs[i].ID
			return fmt.Errorf("record %s:%d:%d of %d bytes, limit %d: %w", id.Stream, id.Seq, id.Index, n, w.opts.MaxLineBytes, ErrRecordTooLong)
		}
	}
	bp := framePool.Get().(*[]byte)
	frame := appendLines((*bp)[:0], recs)
	err := f.sendFrame(ctx, frame)
	if cap(frame) <= maxPooledFrame {
		*bp = frame[:0]
		framePool.Put(bp)
	}
	if err != nil {
		return err
	}
	w.m.frames.Inc()
	w.m.records.Add(float64(len(recs)))
	w.m.bytes.Add(float64(len(frame)))
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
// connection after a failure, until it succeeds, ctx ends or the Writer is
// closed.
func (f *lines) sendFrame(ctx context.Context, frame []byte) error {
	w := f.w
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

// readLoop reads and discards whatever the drainer sends on l (a lines
// drainer sends nothing), so that a drainer that goes away is noticed even
// when nobody writes. It exits when the connection fails or is closed.
func (f *lines) readLoop(ctx context.Context, l *lease) {
	w := f.w
	defer w.wg.Done()
	var buf [512]byte
	for {
		if _, err := l.conn.Read(buf[:]); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				w.fail(ctx, l, ReasonPeerClosed, fmt.Errorf("read from %q: %w", w.opts.Path, err))
			}
			return
		}
	}
}
