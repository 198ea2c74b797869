package drain

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/obs"
)

// readBuf is the initial per-connection read buffer; it grows, up to
// MaxLine+1 bytes, only while a single line does not fit.
const readBuf = 256 << 10

// handleLines reads newline-delimited records from c until the peer closes
// it, an error occurs, or shutdown's read deadline passes.
//
// It works on chunks, not lines: each Read lands after the partial line kept
// from the previous one, everything up to the last newline is written to the
// output as one unit, and the tail is moved to the front of the buffer. The
// buffer never holds more than MaxLine+1 bytes, so any newline-terminated
// line in it is within the limit, and a full buffer without a newline is a
// line that is too long.
func (s *Server) handleLines(c *conn) {
	limit := s.opts.MaxLine + 1 // the longest line plus its newline
	buf := make([]byte, min(readBuf, limit))
	start := 0     // buf[:start] is a partial line carried over
	dirty := false // chunks written since this connection last flushed
	defer func() {
		if dirty { // nothing more will come from this connection
			if err := s.out.flush(); err != nil {
				s.fail(err)
			}
		}
	}()
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
				if !s.writeChunk(c, buf[:cut]) {
					return
				}
				dirty = true
				start = copy(buf, buf[cut:end])
			} else {
				start = end
			}
			if dirty && end < len(buf) { // a short read: nothing more is waiting right now
				if ferr := s.out.flush(); ferr != nil {
					s.fail(ferr)
					s.connError(c, ReasonOutput, ferr)
					return
				}
				dirty = false
			}
		}
		if err != nil {
			s.endLines(c, err, start)
			return
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

// writeChunk writes p, whole lines only, to the output and counts it. It
// reports false when c must be closed.
func (s *Server) writeChunk(c *conn, p []byte) bool {
	if err := writeBefore.Hit(s.ctx); fault.IsInjected(err) {
		// The chunk is dropped, as a drainer that died here would.
		s.connError(c, ReasonInjected, err)
		return false
	} // a delay cut short by shutdown: write the chunk anyway
	recs := bytes.Count(p, []byte{'\n'})
	n := len(p)
	if s.opts.WriteReceived {
		c.stamped = appendReceived(c.stamped[:0], p, time.Now().UnixNano())
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
