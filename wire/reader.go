package wire

import (
	"bufio"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf8"

	"github.com/sluice-dev/sluice/record"
)

// Reader reads frames from a byte stream. It is not safe for concurrent use.
//
// A server typically sets Limits.MaxFrameBytes to MaxHandshakeBytes for the
// first frame and to the limit it granted in its WELCOME afterwards; a client
// can keep MaxHandshakeBytes for the whole session, since no server frame is
// larger.
type Reader struct {
	// Limits bounds the frames ReadFrame accepts. It may be changed between
	// calls. Zero fields mean the defaults.
	Limits Limits

	br   *bufio.Reader
	hdr  [HeaderLen]byte
	buf  []byte          // body of the current frame; DATA payloads alias it
	recs []record.Record // records of the current DATA frame
	tab  []streamKey     // stream table of the current DATA frame
	prev []streamKey     // stream table of the previous one, to reuse its strings
}

// readBufferSize is the size of the Reader's bufio buffer.
const readBufferSize = 64 << 10

// growStep bounds how much of a declared body the Reader allocates before
// that much has actually arrived.
const growStep = 64 << 10

// NewReader returns a Reader that reads frames from rd through its own
// buffer, with the default limits.
func NewReader(rd io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(rd, readBufferSize)}
}

// ReadFrame reads and checks the next frame.
//
// It returns io.EOF only when the stream ends cleanly between two frames, and
// io.ErrUnexpectedEOF when it ends inside one. A frame that violates the
// protocol gives a *ProtocolError whose Code the caller sends back in CLOSE
// before closing the connection; the Reader is then no longer in step with
// the stream and must not be used again. Other errors come from the
// underlying reader, wrapped.
//
// ReadFrame checks the framing and the layout of each body (in the order of
// docs/protocol.md, section 9) but not the session's rules: which frame types
// may come when, frame id order, acknowledgement bounds and the window are
// the caller's to check.
//
// The Records of a DATA frame, and their Data, are only valid until the next
// call to ReadFrame: they alias the Reader's buffers. Their Stream strings
// may be kept. A body of n declared bytes makes the Reader allocate at most
// about 2n bytes for it, plus 64 bytes of record.Record per 18 bytes of DATA body,
// and never before the length has passed the limit.
func (r *Reader) ReadFrame() (Frame, error) {
	if _, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		return Frame{}, readErr(err, "header")
	}
	n := be.Uint32(r.hdr[0:4])
	if limit := r.Limits.frameBytes(); int64(n) > int64(limit) {
		return Frame{}, &ProtocolError{Code: CodeFrameTooLarge, Msg: fmt.Sprintf("length %d exceeds limit %d", n, limit), Err: ErrFrameTooLarge}
	}
	if err := r.readBody(int(n)); err != nil {
		return Frame{}, err
	}
	crc := crc32.Update(crc32.Checksum(r.hdr[8:], castagnoli), castagnoli, r.buf)
	if want := be.Uint32(r.hdr[4:8]); crc != want {
		return Frame{}, protoErr(CodeBadChecksum, fmt.Sprintf("crc 0x%08x, computed 0x%08x", want, crc))
	}
	if flags := r.hdr[9]; flags != 0 {
		return Frame{}, protoErr(CodeBadFlags, fmt.Sprintf("reserved flags 0x%02x set", flags))
	}
	f := Frame{Type: FrameType(r.hdr[8])}
	var err *ProtocolError
	switch f.Type {
	case TypeHello:
		f.Hello, err = parseHello(r.buf)
	case TypeWelcome:
		f.Welcome, err = parseWelcome(r.buf)
	case TypeData:
		f.Data, err = r.parseData(r.buf)
	case TypeAck:
		if len(r.buf) != 8 {
			err = malformed("ACK body is %d bytes, want 8", len(r.buf))
		} else {
			f.Ack.UpTo = be.Uint64(r.buf)
		}
	case TypeClose:
		f.Close, err = parseClose(r.buf)
	default:
		return Frame{}, protoErr(CodeUnknownType, "unknown frame type "+f.Type.String())
	}
	if err != nil {
		return Frame{}, err
	}
	return f, nil
}

func readErr(err error, what string) error {
	switch {
	case err == io.EOF && what == "header":
		return io.EOF
	case err == io.EOF, err == io.ErrUnexpectedEOF:
		return io.ErrUnexpectedEOF
	}
	return fmt.Errorf("wire: read frame %s: %w", what, err)
}

// Detach hands the caller the memory of the last frame read: the Records of
// a DATA frame, and their Data, stay valid after later calls to ReadFrame,
// and are the caller's to modify. The Reader reads the next frames into buf
// and recs instead (their contents are overwritten; nil: it allocates), and
// Detach returns the memory it held (the frame's whole body buffer and
// records array), so that a caller that recycles what it detached, giving
// it back in a later call, allocates nothing.
func (r *Reader) Detach(buf []byte, recs []record.Record) (body []byte, frameRecs []record.Record) {
	body, frameRecs = r.buf, r.recs
	r.buf, r.recs = buf[:0], recs[:0]
	return body, frameRecs
}

// readBody reads an n-byte body into r.buf, growing it only as data arrives.
func (r *Reader) readBody(n int) error {
	if n <= cap(r.buf) {
		r.buf = r.buf[:n]
		_, err := io.ReadFull(r.br, r.buf)
		if err != nil {
			return readErr(err, "body")
		}
		return nil
	}
	r.buf = r.buf[:0]
	for have := 0; have < n; {
		step := min(n-have, max(growStep, have))
		if have+step > cap(r.buf) {
			nb := make([]byte, have+step)
			copy(nb, r.buf[:have])
			r.buf = nb
		}
		r.buf = r.buf[:have+step]
		if _, err := io.ReadFull(r.br, r.buf[have:]); err != nil {
			return readErr(err, "body")
		}
		have += step
	}
	return nil
}

func malformed(format string, args ...any) *ProtocolError {
	return protoErr(CodeMalformed, fmt.Sprintf(format, args...))
}

// parseStr reads a str at b[off:] of minLen..maxLen bytes.
func parseStr(b []byte, off int, field string, minLen, maxLen int) ([]byte, int, *ProtocolError) {
	if len(b)-off < 2 {
		return nil, off, malformed("body ends before %s", field)
	}
	n := int(be.Uint16(b[off:]))
	off += 2
	if n > len(b)-off {
		return nil, off, malformed("%s of %d bytes runs past the body", field, n)
	}
	s := b[off : off+n]
	if n < minLen || n > maxLen {
		return nil, off, &ProtocolError{Code: CodeMalformed, Msg: fmt.Sprintf("%s is %d bytes, want %d..%d", field, n, minLen, maxLen), Err: ErrBadString}
	}
	if !utf8.Valid(s) {
		return nil, off, &ProtocolError{Code: CodeMalformed, Msg: field + " is not valid UTF-8", Err: ErrBadString}
	}
	return s, off + n, nil
}

func trailing(b []byte, off int, what string) *ProtocolError {
	if off != len(b) {
		return malformed("%d trailing bytes after %s", len(b)-off, what)
	}
	return nil
}

func parseHello(b []byte) (Hello, *ProtocolError) {
	if len(b) > MaxHandshakeBytes {
		// What a server reading the first frame with the handshake limit
		// says, whatever limit this Reader has.
		return Hello{}, &ProtocolError{Code: CodeFrameTooLarge, Msg: fmt.Sprintf("HELLO body of %d bytes exceeds %d", len(b), MaxHandshakeBytes), Err: ErrFrameTooLarge}
	}
	if len(b) < len(Magic) || string(b[:len(Magic)]) != Magic {
		return Hello{}, protoErr(CodeBadMagic, "HELLO does not start with \"SLUICE\"")
	}
	if len(b) < helloFixed {
		return Hello{}, malformed("HELLO body is %d bytes, want at least %d", len(b), helloFixed+2+1)
	}
	h := Hello{
		MinVersion:    be.Uint16(b[6:]),
		MaxVersion:    be.Uint16(b[8:]),
		MaxFrameBytes: be.Uint32(b[10:]),
		Window:        be.Uint32(b[14:]),
	}
	s, off, err := parseStr(b, helloFixed, "instance", 1, MaxIdentityLen)
	if err != nil {
		return Hello{}, err
	}
	h.Instance = string(s)
	if h.MaxVersion < 2 { // the layout of version 1 ends here
		return h, trailing(b, off, "HELLO")
	}
	if len(b)-off < 2 {
		return Hello{}, malformed("body ends before position_count")
	}
	n := int(be.Uint16(b[off:]))
	off += 2
	if n > MaxPositions {
		return Hello{}, &ProtocolError{Code: CodeMalformed, Msg: fmt.Sprintf("%d stream positions, limit %d", n, MaxPositions), Err: ErrTooManyStreams}
	}
	if n > 0 {
		h.Positions = make([]StreamPosition, 0, n)
	}
	for i := 0; i < n; i++ {
		s, off, err = parseStr(b, off, "position stream name", 1, MaxStreamLen)
		if err != nil {
			return Hello{}, err
		}
		if len(b)-off < 16 {
			return Hello{}, malformed("position %d: body ends inside its sequences", i)
		}
		p := StreamPosition{Stream: string(s), Epoch: be.Uint64(b[off:]), LastSeq: be.Uint64(b[off+8:])}
		off += 16
		for _, q := range h.Positions {
			if q.Stream == p.Stream && q.Epoch == p.Epoch {
				return Hello{}, &ProtocolError{Code: CodeMalformed, Msg: fmt.Sprintf("stream %q epoch %d twice in the positions", p.Stream, p.Epoch), Err: ErrBadPositions}
			}
		}
		h.Positions = append(h.Positions, p)
	}
	return h, trailing(b, off, "HELLO")
}

func parseWelcome(b []byte) (Welcome, *ProtocolError) {
	const fixed = 2 + 4 + 4 + 4
	if len(b) < fixed {
		return Welcome{}, malformed("WELCOME body is %d bytes, want at least %d", len(b), fixed+2)
	}
	w := Welcome{
		Version:       be.Uint16(b[0:]),
		MaxFrameBytes: be.Uint32(b[2:]),
		MaxRecords:    be.Uint32(b[6:]),
		Window:        be.Uint32(b[10:]),
	}
	s, off, err := parseStr(b, fixed, "server", 0, MaxIdentityLen)
	if err != nil {
		return Welcome{}, err
	}
	w.Server = string(s)
	return w, trailing(b, off, "WELCOME")
}

func parseClose(b []byte) (Close, *ProtocolError) {
	if len(b) < 2 {
		return Close{}, malformed("CLOSE body is %d bytes, want at least 4", len(b))
	}
	c := Close{Code: CloseCode(be.Uint16(b))}
	s, off, err := parseStr(b, 2, "reason", 0, MaxReasonLen)
	if err != nil {
		return Close{}, err
	}
	c.Reason = string(s)
	return c, trailing(b, off, "CLOSE")
}

// parseData decodes a DATA body into r.recs and r.tab.
func (r *Reader) parseData(b []byte) (Data, *ProtocolError) {
	if len(b) < 8+2 {
		return Data{}, malformed("DATA body is %d bytes, want at least 14", len(b))
	}
	d := Data{FrameID: be.Uint64(b)}
	if d.FrameID == 0 {
		return Data{}, &ProtocolError{Code: CodeMalformed, Msg: "frame id 0", Err: ErrZeroFrameID}
	}
	nstreams := int(be.Uint16(b[8:]))
	off := 10
	if nstreams*(streamEntryOverhead+1) > len(b)-off { // each entry is at least a u16, one byte and a u64
		return Data{}, malformed("%d stream entries cannot fit in the %d bytes left", nstreams, len(b)-off)
	}
	r.prev, r.tab = r.tab, r.prev[:0]
	var seen map[streamKey]struct{} // for duplicate checks in large tables
	for i := 0; i < nstreams; i++ {
		var (
			s   []byte
			err *ProtocolError
		)
		s, off, err = parseStr(b, off, "stream name", 1, MaxStreamLen)
		if err != nil {
			return Data{}, err
		}
		if len(b)-off < 8 {
			return Data{}, malformed("stream table entry %d: body ends before its epoch", i)
		}
		epoch := be.Uint64(b[off:])
		off += 8
		if nstreams <= 8 {
			for _, t := range r.tab {
				if t.epoch == epoch && t.name == string(s) {
					return Data{}, malformed("stream %q epoch %d twice in the table", s, epoch)
				}
			}
			r.tab = append(r.tab, streamKey{r.intern(s), epoch})
		} else {
			k := streamKey{r.intern(s), epoch}
			if seen == nil {
				seen = make(map[streamKey]struct{}, nstreams)
			}
			if _, dup := seen[k]; dup {
				return Data{}, malformed("stream %q epoch %d twice in the table", s, epoch)
			}
			seen[k] = struct{}{}
			r.tab = append(r.tab, k)
		}
	}
	if len(b)-off < 4 {
		return Data{}, malformed("body ends before record_count")
	}
	nrec := be.Uint32(b[off:])
	off += 4
	if limit := r.Limits.records(); int64(nrec) > int64(limit) {
		return Data{}, &ProtocolError{Code: CodeTooManyRecords, Msg: fmt.Sprintf("%d records, limit %d", nrec, limit), Err: ErrTooManyRecords}
	}
	if uint64(nrec)*RecordOverhead > uint64(len(b)-off) {
		return Data{}, malformed("%d records cannot fit in the %d bytes left", nrec, len(b)-off)
	}
	if int(nrec) > cap(r.recs) {
		r.recs = make([]record.Record, nrec)
	}
	recs := r.recs[:nrec]
	next := 0 // the stream table entry the next new stream must use
	for i := range recs {
		if len(b)-off < RecordOverhead {
			return Data{}, malformed("record %d: body ends inside its header", i)
		}
		h := b[off : off+RecordOverhead]
		si := int(be.Uint16(h))
		if si >= nstreams || si > next {
			return Data{}, malformed("record %d: stream index %d, want < %d and <= %d", i, si, nstreams, next)
		}
		if si == next {
			next++
		}
		n := be.Uint32(h[14:])
		off += RecordOverhead
		if uint64(n) > uint64(len(b)-off) {
			return Data{}, malformed("record %d: payload of %d bytes runs past the body", i, n)
		}
		end := off + int(n)
		recs[i] = record.Record{
			ID:   record.ID{Stream: r.tab[si].name, Epoch: r.tab[si].epoch, Seq: be.Uint64(h[2:]), Index: be.Uint32(h[10:])},
			Data: b[off:end:end],
		}
		off = end
	}
	if next != nstreams {
		return Data{}, malformed("stream table entry %d is never used", next)
	}
	if err := trailing(b, off, "the last record"); err != nil {
		return Data{}, err
	}
	d.Records = recs
	return d, nil
}

// intern returns s as a string, reusing a string of the previous frame's
// stream table when one is equal, so that a steady stream of frames from the
// same streams allocates no strings.
func (r *Reader) intern(s []byte) string {
	for i, t := range r.prev {
		if i == 8 {
			break
		}
		if t.name == string(s) {
			return t.name
		}
	}
	return string(s)
}
