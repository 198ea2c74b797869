package wire

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/sluice-dev/sluice/record"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var be = binary.BigEndian

// beginFrame appends a header with length and crc left to finish.
func beginFrame(dst []byte, t FrameType) []byte {
	return append(dst, 0, 0, 0, 0, 0, 0, 0, 0, byte(t), 0)
}

// finishFrame fills in the length and crc of the frame starting at start.
func finishFrame(dst []byte, start int) []byte {
	f := dst[start:]
	be.PutUint32(f[0:4], uint32(len(f)-HeaderLen))
	be.PutUint32(f[4:8], crc32.Checksum(f[8:], castagnoli))
	return dst
}

func appendStr(dst []byte, s string) []byte {
	dst = be.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func validStr(s string, minLen, maxLen int) bool {
	return len(s) >= minLen && len(s) <= maxLen && utf8.ValidString(s)
}

func checkStr(field, s string, minLen, maxLen int) error {
	if len(s) < minLen || len(s) > maxLen {
		return fmt.Errorf("wire: %s is %d bytes, want %d..%d: %w", field, len(s), minLen, maxLen, ErrBadString)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("wire: %s is not valid UTF-8: %w", field, ErrBadString)
	}
	return nil
}

// helloFixed is the size of a HELLO body before the instance string.
const helloFixed = len(Magic) + 2 + 2 + 4 + 4

// positionOverhead is the encoded size of a stream position without its
// name: name length u16, epoch u64, last_seq u64.
const positionOverhead = 2 + 8 + 8

// AppendHello appends a HELLO frame to dst: in the layout of version 2, with
// the stream position table, when h.MaxVersion >= 2, else in that of version
// 1. It fails, leaving dst as it was, when h.Instance is empty, longer than
// MaxIdentityLen or not UTF-8 (ErrBadString); when a position's stream name
// is (ErrBadString), there are more than MaxPositions positions
// (ErrTooManyStreams), a (stream, epoch) comes twice or the version-1 layout
// would have to carry positions (ErrBadPositions); or when the body would
// exceed MaxHandshakeBytes (ErrFrameTooLarge).
func AppendHello(dst []byte, h Hello) ([]byte, error) {
	if err := checkStr("instance", h.Instance, 1, MaxIdentityLen); err != nil {
		return dst, err
	}
	v2 := h.MaxVersion >= 2
	size := helloFixed + 2 + len(h.Instance)
	if v2 {
		size += 2
	}
	switch {
	case !v2 && len(h.Positions) > 0:
		return dst, fmt.Errorf("wire: HELLO of versions %d..%d has no stream position table: %w", h.MinVersion, h.MaxVersion, ErrBadPositions)
	case len(h.Positions) > MaxPositions:
		return dst, fmt.Errorf("wire: %d stream positions, limit %d: %w", len(h.Positions), MaxPositions, ErrTooManyStreams)
	}
	for i, p := range h.Positions {
		if err := checkStr(fmt.Sprintf("stream name of position %d", i), p.Stream, 1, MaxStreamLen); err != nil {
			return dst, err
		}
		for _, q := range h.Positions[:i] {
			if q.Stream == p.Stream && q.Epoch == p.Epoch {
				return dst, fmt.Errorf("wire: stream %q epoch %d twice in the positions: %w", p.Stream, p.Epoch, ErrBadPositions)
			}
		}
		size += positionOverhead + len(p.Stream)
	}
	if size > MaxHandshakeBytes {
		return dst, fmt.Errorf("wire: HELLO body of %d bytes exceeds %d: %w", size, MaxHandshakeBytes, ErrFrameTooLarge)
	}
	start := len(dst)
	dst = beginFrame(dst, TypeHello)
	dst = append(dst, Magic...)
	dst = be.AppendUint16(dst, h.MinVersion)
	dst = be.AppendUint16(dst, h.MaxVersion)
	dst = be.AppendUint32(dst, h.MaxFrameBytes)
	dst = be.AppendUint32(dst, h.Window)
	dst = appendStr(dst, h.Instance)
	if v2 {
		dst = be.AppendUint16(dst, uint16(len(h.Positions)))
		for _, p := range h.Positions {
			dst = appendStr(dst, p.Stream)
			dst = be.AppendUint64(dst, p.Epoch)
			dst = be.AppendUint64(dst, p.LastSeq)
		}
	}
	return finishFrame(dst, start), nil
}

// AppendWelcome appends a WELCOME frame to dst. It fails, leaving dst as it
// was, when w.Server is longer than MaxIdentityLen or not UTF-8.
func AppendWelcome(dst []byte, w Welcome) ([]byte, error) {
	if err := checkStr("server", w.Server, 0, MaxIdentityLen); err != nil {
		return dst, err
	}
	start := len(dst)
	dst = beginFrame(dst, TypeWelcome)
	dst = be.AppendUint16(dst, w.Version)
	dst = be.AppendUint32(dst, w.MaxFrameBytes)
	dst = be.AppendUint32(dst, w.MaxRecords)
	dst = be.AppendUint32(dst, w.Window)
	dst = appendStr(dst, w.Server)
	return finishFrame(dst, start), nil
}

// AppendAck appends an ACK frame to dst.
func AppendAck(dst []byte, a Ack) []byte {
	start := len(dst)
	dst = beginFrame(dst, TypeAck)
	dst = be.AppendUint64(dst, a.UpTo)
	return finishFrame(dst, start)
}

// AppendClose appends a CLOSE frame to dst. It never fails: a reason that is
// not valid UTF-8 has its invalid bytes replaced by U+FFFD, and one longer
// than MaxReasonLen is cut at a character boundary.
func AppendClose(dst []byte, c Close) []byte {
	reason := c.Reason
	if !utf8.ValidString(reason) {
		reason = strings.ToValidUTF8(reason, "\uFFFD")
	}
	if len(reason) > MaxReasonLen {
		n := MaxReasonLen
		for n > 0 && !utf8.RuneStart(reason[n]) {
			n--
		}
		reason = reason[:n]
	}
	start := len(dst)
	dst = beginFrame(dst, TypeClose)
	dst = be.AppendUint16(dst, uint16(c.Code))
	dst = appendStr(dst, reason)
	return finishFrame(dst, start)
}

// streamKey is one entry of a DATA frame's stream table: a stream
// incarnation.
type streamKey struct {
	name  string
	epoch uint64
}

// interner maps the stream incarnations of one DATA frame to their table
// index, without allocating for the first few.
type interner struct {
	small [8]streamKey
	n     int
	big   map[streamKey]uint16 // all entries once n > len(small)
	last  streamKey            // cache of the most recent lookup
	lastI uint16
}

// lookup returns the index of k and whether it was already known; an
// unknown k is added.
func (in *interner) lookup(k streamKey) (uint16, bool) {
	if in.n > 0 && k == in.last {
		return in.lastI, true
	}
	var (
		i     int
		found bool
	)
	if in.big != nil {
		var j uint16
		j, found = in.big[k]
		i = int(j)
	} else {
		for i = 0; i < in.n; i++ {
			if in.small[i] == k {
				found = true
				break
			}
		}
	}
	if !found {
		i = in.n
		switch {
		case in.n < len(in.small):
			in.small[in.n] = k
		case in.big == nil:
			in.big = make(map[streamKey]uint16, 2*len(in.small))
			for j, s := range in.small {
				in.big[s] = uint16(j)
			}
			fallthrough
		default:
			in.big[k] = uint16(i)
		}
		in.n++
	}
	in.last, in.lastI = k, uint16(i)
	return uint16(i), found
}

// streamEntryOverhead is the encoded size of a stream table entry without
// its name: name length u16, epoch u64.
const streamEntryOverhead = 2 + 8

// DataBodySize returns the encoded body size of a DATA frame holding recs,
// without checking its limits; the whole frame is HeaderLen bytes more.
// A sink can use it to decide where to split before encoding.
func DataBodySize(recs []record.Record) int {
	var in interner
	n := 8 + 2 + 4
	for i := range recs {
		if _, found := in.lookup(streamKey{recs[i].ID.Stream, recs[i].ID.Epoch}); !found {
			n += streamEntryOverhead + len(recs[i].ID.Stream)
		}
		n += RecordOverhead + len(recs[i].Data)
	}
	return n
}

// AppendData appends a DATA frame with frame id frameID holding recs, in
// order, to dst. Its stream table has one entry per distinct (ID.Stream,
// ID.Epoch) of recs, in first-use order. It checks the frame against lim (zero fields: the defaults)
// and fails, leaving dst's length as it was, with ErrZeroFrameID,
// ErrTooManyRecords, ErrTooManyStreams, ErrBadString or ErrFrameTooLarge. It
// allocates nothing beyond dst's growth unless the frame has more than eight
// distinct streams.
//
// The caller is responsible for the protocol's whole-message rule: all records
// of one queue message go in the same frame.
func AppendData(dst []byte, frameID uint64, recs []record.Record, lim Limits) ([]byte, error) {
	if frameID == 0 {
		return dst, ErrZeroFrameID
	}
	if len(recs) > lim.records() {
		return dst, fmt.Errorf("wire: %d records, limit %d: %w", len(recs), lim.records(), ErrTooManyRecords)
	}
	start := len(dst)
	dst = beginFrame(dst, TypeData)
	dst = be.AppendUint64(dst, frameID)
	dst = append(dst, 0, 0) // stream_count, filled in below

	// Pass 1: write the stream table in first-use order, and size the frame.
	var in interner
	size := len(dst) - start - HeaderLen + 4
	for i := range recs {
		name := recs[i].ID.Stream
		if _, found := in.lookup(streamKey{name, recs[i].ID.Epoch}); !found {
			if in.n > MaxStreamsPerFrame {
				return dst[:start], fmt.Errorf("wire: more than %d streams: %w", MaxStreamsPerFrame, ErrTooManyStreams)
			}
			if !validStr(name, 1, MaxStreamLen) {
				return dst[:start], checkStr(fmt.Sprintf("stream name of record %d", i), name, 1, MaxStreamLen)
			}
			dst = appendStr(dst, name)
			dst = be.AppendUint64(dst, recs[i].ID.Epoch)
			size += streamEntryOverhead + len(name)
		}
		size += RecordOverhead + len(recs[i].Data)
		if size > lim.frameBytes() {
			return dst[:start], fmt.Errorf("wire: DATA body exceeds %d bytes: %w", lim.frameBytes(), ErrFrameTooLarge)
		}
	}
	be.PutUint16(dst[start+HeaderLen+8:], uint16(in.n))

	// Pass 2: the records.
	dst = slices.Grow(dst, size-(len(dst)-start-HeaderLen))
	dst = be.AppendUint32(dst, uint32(len(recs)))
	for i := range recs {
		r := &recs[i]
		idx, _ := in.lookup(streamKey{r.ID.Stream, r.ID.Epoch})
		dst = be.AppendUint16(dst, idx)
		dst = be.AppendUint64(dst, r.ID.Seq)
		dst = be.AppendUint32(dst, r.ID.Index)
		dst = be.AppendUint32(dst, uint32(len(r.Data)))
		dst = append(dst, r.Data...)
	}
	return finishFrame(dst, start), nil
}
