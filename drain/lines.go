package drain

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/obs"
)

// readBuf is the initial per-connection read buffer; it grows, up to
// MaxLine+1 bytes, only while a single line does not fit.
const readBuf = 256 << 10

// linesAhead is how many chunks a lines connection reads ahead of the
// output: a write that stalls (an ext4 journal commit stalls one for about
// 20ms on the test VM) is absorbed here instead of stopping the reads and,
// through the socket, the sender. At most linesAhead+2 read buffers exist
// per connection.
const linesAhead = 8

// linesChunk is a run of whole lines read from one connection, on its way
// from the connection's reader to its writer.
type linesChunk struct {
	buf   []byte // buf[:n] is the lines; the writer's until it hands buf back
	n     int
	recv  int64 // when it was read, Unix ns (Options.WriteReceived)
	short bool  // the read that completed it did not fill the buffer: nothing more was waiting
}

// handleLines reads newline-delimited records from c until the peer closes
// it, an error occurs, or shutdown's read deadline passes.
//
// It works on chunks, not lines: each Read lands after the partial line kept
// from the previous one, everything up to the last newline goes to the
// output as one unit, and the tail moves to the front of the next buffer.
// A buffer never holds more than MaxLine+1 bytes, so any newline-terminated
// line in it is within the limit, and a full buffer without a newline is a
// line that is too long.
//
// Reading and writing run on two goroutines, so the connection keeps being
// read while the output writes: the reader hands each chunk to the writer
// (linesWriter) and goes on with another buffer, at most linesAhead chunks
// ahead, after which it waits for the writer (backpressure).
func (s *Server) handleLines(c *conn) {
	limit := s.opts.MaxLine + 1 // the longest line plus its newline
	chunks := make(chan linesChunk, linesAhead)
	free := make(chan []byte, linesAhead+2)
	made := 0 // read buffers made; they circulate through chunks and free
	newBuf := func(size int) []byte {
		select {
		case b := <-free:
			return b
		default:
		}
		if made < linesAhead+2 {
			made++
			return make([]byte, size)
		}
		return <-free // the writer hands one back after each chunk
	}
	var failed atomic.Bool // the writer stopped the connection
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		s.linesWriter(c, chunks, free, func() {
			failed.Store(true)
			c.nc.Close() // ends the reader's Read
		})
	}()
	defer func() {
		close(chunks)
		<-wdone
	}()

	buf := newBuf(min(readBuf, limit))
	start := 0 // buf[:start] is a partial line carried over
	for {
		if start == len(buf) {
			if len(buf) >= limit {
				s.connError(c, ReasonLineTooLong, fmt.Errorf("%w: more than %d bytes without a newline; raise drain.max_line_bytes (sluice drain --max-line-bytes, and the same in sluice run's configuration) or fix the sender", ErrLineTooLong, s.opts.MaxLine))
				return
			}
			grown := make([]byte, min(2*len(buf), limit))
			copy(grown, buf)
			buf = grown
		}
		n, err := c.nc.Read(buf[start:])
		if n > 0 {
			end := start + n
			if i := bytes.LastIndexByte(buf[start:end], '\n'); i >= 0 {
				cut := start + i + 1
				var recv int64
				if s.opts.WriteReceived {
					recv = time.Now().UnixNano()
				}
				next := newBuf(len(buf))
				if len(next) <= end-cut {
					next = make([]byte, len(buf))
				}
				tail := copy(next, buf[cut:end])
				chunks <- linesChunk{buf: buf, n: cut, recv: recv, short: end < len(buf)}
				buf, start = next, tail
			} else {
				start = end
			}
		}
		if err != nil {
			if !failed.Load() {
				s.endLines(c, err, start)
			}
			return
		}
	}
}

// linesWriter writes the chunks c's reader hands over, in order, and gives
// each buffer back on free, until chunks is closed. It flushes the output
// when a chunk came from a read that found nothing more waiting and no chunk
// is queued behind it, and once more at the end. On an output error or an
// injected drop it calls stop, which must end the connection, and discards
// the chunks still coming.
func (s *Server) linesWriter(c *conn, chunks <-chan linesChunk, free chan<- []byte, stop func()) {
	ok := true
	dirty := false // chunks written since this connection last flushed
	for ch := range chunks {
		if ok {
			if ok = s.writeChunk(c, ch.buf[:ch.n], ch.recv); ok {
				dirty = true
				if ch.short && len(chunks) == 0 {
					if err := s.out.flush(); err != nil {
						s.fail(err)
						s.connError(c, ReasonOutput, err)
						ok = false
					}
					dirty = false
				}
			}
			if !ok {
				stop()
			}
		}
		free <- ch.buf // never blocks: free has room for every buffer
	}
	if ok && dirty { // nothing more will come from this connection
		if err := s.out.flush(); err != nil {
			s.fail(err)
		}
	}
}

// endLines handles the end of a lines connection: err is what the last Read
// returned and partial the length of the unterminated line left over.
func (s *Server) endLines(c *conn, err error, partial int) {
	shutdownCut := false
	switch {
	case errors.Is(err, io.EOF):
	case errors.Is(err, os.ErrDeadlineExceeded) && s.shuttingDown():
		shutdownCut = true
	default:
		s.connError(c, ReasonRead, err)
	}
	if partial > 0 {
		s.m.torn.Inc()
		c.log.Debug("discarded a partial line: the connection ended before its newline", obs.KeyBytes, partial)
	}
	if shutdownCut {
		c.log.Info("closed a connection still sending at shutdown, after the drain timeout", obs.KeyBytes, partial)
	}
}

// writeChunk writes p, whole lines only, received at recv (Unix ns), to the
// output and counts it. It reports false when c must be closed.
func (s *Server) writeChunk(c *conn, p []byte, recv int64) bool {
	if err := writeBefore.Hit(s.ctx); fault.IsInjected(err) {
		// The chunk is dropped, as a drainer that died here would.
		s.connError(c, ReasonInjected, err)
		return false
	} // a delay cut short by shutdown: write the chunk anyway
	recs := bytes.Count(p, []byte{'\n'})
	n := len(p)
	if s.opts.WriteReceived {
		c.stamped = appendReceived(c.stamped[:0], p, recv)
		p = c.stamped
	}
	if err := s.out.write(p); err != nil {
		s.fail(err)
		s.connError(c, ReasonOutput, err)
		return false
	}
	s.m.records.Add(float64(recs))
	s.m.bytes.Add(float64(n))
	return true
}

// appendReceived appends the lines of p to dst, each prefixed with the
// receive time ns and a tab (Options.WriteReceived).
func appendReceived(dst, p []byte, ns int64) []byte {
	var prefix [21]byte
	pre := append(strconv.AppendInt(prefix[:0], ns, 10), '\t')
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		dst = append(dst, pre...)
		dst = append(dst, p[:i+1]...)
		p = p[i+1:]
	}
	return dst
}

// shuttingDown reports whether shutdown has begun.
func (s *Server) shuttingDown() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}
