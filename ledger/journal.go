package ledger

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	"github.com/sluice-dev/sluice/record"
)

// Journal record kinds.
const (
	recSnapshot = 'S'
	recCommit   = 'C'
)

// journalMagic opens every snapshot body, with its version after it.
// journalVersion is the version this package writes; it reads every
// version from minJournalVersion up.
const (
	journalMagic      = "SLUICEDJ"
	journalVersion    = 2
	minJournalVersion = 1
)

// maxJournalRecord bounds one record body when reading, so a corrupt length
// cannot make recovery allocate without limit.
const maxJournalRecord = 1 << 30

// readChunk is the most a record body's buffer grows by before the bytes
// are there: a length field that lies costs at most this much memory.
const readChunk = 1 << 20

var (
	be         = binary.BigEndian
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// Point is how far the output is committed: every byte of the output files
// whose names sort before File, and the first Length bytes of File. Files
// sorting after it hold nothing committed. The zero Point (File "") is
// before any output file.
type Point struct {
	File   string // base name of an output file; "" before any
	Length int64  // committed bytes of File
}

// appendRecord appends one journal record (u32 body length, u32 CRC-32C of
// the body, body) whose body body() appends.
func appendRecord(dst []byte, body func([]byte) []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = body(dst)
	b := dst[start+8:]
	be.PutUint32(dst[start:], uint32(len(b)))
	be.PutUint32(dst[start+4:], crc32.Checksum(b, castagnoli))
	return dst
}

func appendStr(dst []byte, s string) []byte {
	dst = be.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendPoint(dst []byte, p Point) []byte {
	dst = appendStr(dst, p.File)
	return be.AppendUint64(dst, uint64(p.Length))
}

// appendSnapshot appends a snapshot record (version journalVersion) of d at
// point p.
func appendSnapshot(dst []byte, p Point, d *state) []byte {
	return appendRecord(dst, func(b []byte) []byte {
		b = append(b, recSnapshot)
		b = append(b, journalMagic...)
		b = be.AppendUint16(b, journalVersion)
		b = appendPoint(b, p)
		keys := d.sortedKeys()
		b = be.AppendUint32(b, uint32(len(keys)))
		for _, k := range keys {
			s := d.streams[k]
			b = appendStr(b, k.stream)
			b = be.AppendUint64(b, k.epoch)
			b = be.AppendUint64(b, s.low)
			b = be.AppendUint32(b, uint32(len(s.spans)))
			for _, sp := range s.spans {
				b = be.AppendUint64(b, sp.lo)
				b = be.AppendUint64(b, sp.hi)
			}
		}
		return b
	})
}

// appendCommit appends a commit record: the output is committed up to p,
// and ids (grouped by stream incarnation, in the order given: consecutive
// ids of one incarnation form one group) are committed messages.
func appendCommit(dst []byte, p Point, ids []record.MsgID) []byte {
	return appendRecord(dst, func(b []byte) []byte {
		b = append(b, recCommit)
		b = appendPoint(b, p)
		countAt := len(b)
		b = be.AppendUint32(b, 0)
		groups := 0
		for i := 0; i < len(ids); {
			key := incarnationOf(ids[i])
			j := i + 1
			for j < len(ids) && incarnationOf(ids[j]) == key {
				j++
			}
			b = appendStr(b, key.stream)
			b = be.AppendUint64(b, key.epoch)
			b = be.AppendUint32(b, uint32(j-i))
			for _, id := range ids[i:j] {
				b = be.AppendUint64(b, id.Seq)
			}
			groups++
			i = j
		}
		be.PutUint32(b[countAt:], uint32(groups))
		return b
	})
}

// sortForCommit orders ids as a commit record stores them: grouped by
// stream incarnation, stably, so each incarnation's own order is kept (the
// dedup bound's evictions depend on it, and replay applies ids in the
// stored order).
func sortForCommit(ids []record.MsgID) {
	slices.SortStableFunc(ids, func(a, b record.MsgID) int {
		return compareIncarnations(incarnationOf(a), incarnationOf(b))
	})
}

// errUndecodable marks a record that does not decode; replay stops before
// it, as before a torn one.
var errUndecodable = errors.New("undecodable journal record")

// dec reads the fields of one record body. A read past the end sets bad
// and yields zeros.
type dec struct {
	b   []byte
	bad bool
}

func (d *dec) n(k int) []byte {
	if d.bad || len(d.b) < k {
		d.bad = true
		return make([]byte, k)
	}
	v := d.b[:k]
	d.b = d.b[k:]
	return v
}
func (d *dec) u16() uint16 { return be.Uint16(d.n(2)) }
func (d *dec) u32() uint32 { return be.Uint32(d.n(4)) }
func (d *dec) u64() uint64 { return be.Uint64(d.n(8)) }
func (d *dec) str() string { return string(d.n(int(d.u16()))) }
func (d *dec) point() Point {
	return Point{File: d.str(), Length: int64(d.u64())}
}

// journalRecords reads the records of a journal in order, calling fn with
// each body. It stops at the end of r or at the first record that is torn,
// fails its CRC, or that fn finds undecodable (errUndecodable), and returns
// the offset where the valid records end (the journal is cut there on
// open).
func journalRecords(r io.Reader, fn func(body []byte) error) (valid int64, err error) {
	br := bufio.NewReaderSize(r, 256<<10)
	var hdr [8]byte
	var body []byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return valid, nil
			}
			return valid, err
		}
		n := int(be.Uint32(hdr[:4]))
		if n == 0 || n > maxJournalRecord {
			return valid, nil
		}
		// Grow the buffer as the bytes arrive, so that a corrupt length
		// at the end of a short file allocates little.
		body = body[:0]
		for len(body) < n {
			k := min(n-len(body), readChunk)
			body = slices.Grow(body, k)
			m, err := io.ReadFull(br, body[len(body):len(body)+k])
			body = body[:len(body)+m]
			if err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					return valid, nil
				}
				return valid, err
			}
		}
		if crc32.Checksum(body, castagnoli) != be.Uint32(hdr[4:]) {
			return valid, nil
		}
		if err := fn(body); err != nil {
			if errors.Is(err, errUndecodable) {
				return valid, nil
			}
			return valid, err
		}
		valid += 8 + int64(n)
	}
}

// replay applies journal record bodies to a dedup state.
type replay struct {
	d       *state
	version uint16 // of the last snapshot; 0 before the first record
	point   Point  // of the last record applied
}

// apply applies one record body. The first record must be a snapshot; it
// sets the version the following commit records are decoded with.
func (r *replay) apply(body []byte) error {
	x := &dec{b: body[1:]}
	switch body[0] {
	case recSnapshot:
		if string(x.n(len(journalMagic))) != journalMagic {
			return errUndecodable
		}
		v := x.u16()
		if x.bad {
			return errUndecodable
		}
		if v < minJournalVersion || v > journalVersion {
			return fmt.Errorf("%w: journal version %d; this drainer reads versions %d to %d: use the drainer that wrote it, or move the journal away to start deduplication afresh", ErrUnknownVersion, v, minJournalVersion, journalVersion)
		}
		p := x.point()
		per := 16 // bytes of one stream entry besides its name and spans
		if v < 2 {
			per = 12
		}
		fresh := map[incarnation]*seen{}
		for range x.u32() {
			if x.bad || len(x.b) < 2+per {
				return errUndecodable
			}
			k := incarnation{stream: x.str()}
			if v >= 2 {
				k.epoch = x.u64()
			}
			s := &seen{low: x.u64()}
			ns := x.u32()
			if x.bad || int64(ns)*16 > int64(len(x.b)) {
				return errUndecodable
			}
			s.spans = make([]span, ns)
			for i := range s.spans {
				s.spans[i] = span{x.u64(), x.u64()}
			}
			if x.bad || !s.valid() {
				return errUndecodable
			}
			if len(s.spans) > r.d.maxSpans { // the bound was lowered since
				s.spans = s.spans[len(s.spans)-r.d.maxSpans:]
			}
			if _, dup := fresh[k]; dup {
				return errUndecodable
			}
			fresh[k] = s
		}
		if x.bad || len(x.b) != 0 {
			return errUndecodable
		}
		r.d.streams, r.version, r.point = fresh, v, p
		return nil
	case recCommit:
		if r.version == 0 {
			return errUndecodable // a journal starts with a snapshot
		}
		p := x.point()
		var ids []record.MsgID
		for range x.u32() {
			id := record.MsgID{Stream: x.str()}
			if r.version >= 2 {
				id.Epoch = x.u64()
			}
			n := x.u32()
			if x.bad || int64(n)*8 > int64(len(x.b)) {
				return errUndecodable
			}
			for range n {
				id.Seq = x.u64()
				ids = append(ids, id)
			}
		}
		if x.bad || len(x.b) != 0 {
			return errUndecodable
		}
		for _, id := range ids { // only once the whole record decoded
			r.d.add(id)
		}
		r.point = p
		return nil
	}
	return errUndecodable
}

// recordPoint returns the commit point of one record body, reading nothing
// else. first says whether it is the journal's first record.
func recordPoint(body []byte, first bool) (Point, error) {
	if first && body[0] != recSnapshot {
		return Point{}, errUndecodable
	}
	x := &dec{b: body[1:]}
	switch body[0] {
	case recSnapshot:
		if string(x.n(len(journalMagic))) != journalMagic {
			return Point{}, errUndecodable
		}
		x.u16()
	case recCommit:
	default:
		return Point{}, errUndecodable
	}
	p := x.point()
	if x.bad {
		return Point{}, errUndecodable
	}
	return p, nil
}
