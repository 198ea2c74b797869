package drain

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// JournalName is the dedup journal's file name in an output directory
// (acked framing). ReadDir and the *.jsonl readers never see it.
const JournalName = "sluice-dedup.journal"

// Journal record kinds.
const (
	recSnapshot = 'S'
	recCommit   = 'C'
)

// journalMagic opens every snapshot body, with journalVersion after it.
const (
	journalMagic   = "SLUICEDJ"
	journalVersion = 1
)

// maxJournalRecord bounds one record body when reading, so a corrupt length
// cannot make recovery allocate without limit.
const maxJournalRecord = 1 << 30

var (
	be         = binary.BigEndian
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// commitPoint is how far the output is committed: every byte of the output
// files whose names sort before file, and the first length bytes of file.
// Files sorting after it hold nothing committed.
type commitPoint struct {
	file   string // base name; "" before any output file
	length int64
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

func appendJStr(dst []byte, s string) []byte {
	dst = be.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendPoint(dst []byte, p commitPoint) []byte {
	dst = appendJStr(dst, p.file)
	return be.AppendUint64(dst, uint64(p.length))
}

// appendSnapshot appends a snapshot record of d at point p.
func appendSnapshot(dst []byte, p commitPoint, d *dedupState) []byte {
	return appendRecord(dst, func(b []byte) []byte {
		b = append(b, recSnapshot)
		b = append(b, journalMagic...)
		b = be.AppendUint16(b, journalVersion)
		b = appendPoint(b, p)
		names := make([]string, 0, len(d.streams))
		for name := range d.streams {
			names = append(names, name)
		}
		slices.Sort(names)
		b = be.AppendUint32(b, uint32(len(names)))
		for _, name := range names {
			s := d.streams[name]
			b = appendJStr(b, name)
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
// and keys (grouped by stream, in the order given) are committed messages.
func appendCommit(dst []byte, p commitPoint, keys []msgKey) []byte {
	return appendRecord(dst, func(b []byte) []byte {
		b = append(b, recCommit)
		b = appendPoint(b, p)
		countAt := len(b)
		b = be.AppendUint32(b, 0)
		groups := 0
		for i := 0; i < len(keys); {
			j := i + 1
			for j < len(keys) && keys[j].stream == keys[i].stream {
				j++
			}
			b = appendJStr(b, keys[i].stream)
			b = be.AppendUint32(b, uint32(j-i))
			for _, k := range keys[i:j] {
				b = be.AppendUint64(b, k.seq)
			}
			groups++
			i = j
		}
		be.PutUint32(b[countAt:], uint32(groups))
		return b
	})
}

// errJournal marks a record that does not decode; replay stops before it.
var errJournal = errors.New("undecodable journal record")

// dec reads the fields of one record body.
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
func (d *dec) point() commitPoint {
	return commitPoint{file: d.str(), length: int64(d.u64())}
}

// journalRecords reads the records of the journal at path in order, calling
// fn with each body. It stops at the end of the file or at the first record
// that is torn or fails its CRC, and returns the offset where the valid
// records end (the journal is truncated there by the drainer).
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
		n := be.Uint32(hdr[:4])
		if n == 0 || n > maxJournalRecord {
			return valid, nil
		}
		if cap(body) < int(n) {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(br, body); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return valid, nil
			}
			return valid, err
		}
		if crc32.Checksum(body, castagnoli) != be.Uint32(hdr[4:]) {
			return valid, nil
		}
		if err := fn(body); err != nil {
			if errors.Is(err, errJournal) {
				return valid, nil
			}
			return valid, err
		}
		valid += 8 + int64(n)
	}
}

// replayBody applies one record body to d and returns its commit point.
// first says whether it is the journal's first record, which must be a
// snapshot.
func replayBody(body []byte, d *dedupState, first bool) (commitPoint, error) {
	x := &dec{b: body[1:]}
	switch body[0] {
	case recSnapshot:
		if string(x.n(len(journalMagic))) != journalMagic {
			return commitPoint{}, errJournal
		}
		if v := x.u16(); !x.bad && v != journalVersion {
			return commitPoint{}, fmt.Errorf("journal version %d; this drainer reads version %d: use the drainer that wrote it, or move the journal away to start deduplication afresh", v, journalVersion)
		}
		p := x.point()
		fresh := map[string]*streamSeen{}
		for range x.u32() {
			name := x.str()
			s := &streamSeen{low: x.u64()}
			ns := x.u32()
			if x.bad || int64(ns)*16 > int64(len(x.b)) {
				return commitPoint{}, errJournal
			}
			s.spans = make([]span, ns)
			for i := range s.spans {
				s.spans[i] = span{x.u64(), x.u64()}
			}
			if x.bad {
				return commitPoint{}, errJournal
			}
			for len(s.spans) > d.maxSpans { // the cap was lowered since
				s.spans = s.spans[1:]
				d.evicted++
			}
			fresh[name] = s
		}
		if x.bad || len(x.b) != 0 {
			return commitPoint{}, errJournal
		}
		d.streams = fresh
		return p, nil
	case recCommit:
		if first {
			return commitPoint{}, errJournal
		}
		p := x.point()
		var keys []msgKey
		for range x.u32() {
			name := x.str()
			n := x.u32()
			if x.bad || int64(n)*8 > int64(len(x.b)) {
				return commitPoint{}, errJournal
			}
			for range n {
				keys = append(keys, msgKey{name, x.u64()})
			}
		}
		if x.bad || len(x.b) != 0 {
			return commitPoint{}, errJournal
		}
		for _, k := range keys { // only once the whole record decoded
			d.add(k)
		}
		return p, nil
	}
	return commitPoint{}, errJournal
}

// readCommitPoint returns the commit point of the journal in dir, and
// whether there is a journal at all. It changes nothing (ReadDir uses it).
func readCommitPoint(dir string) (commitPoint, bool, error) {
	f, err := os.Open(filepath.Join(dir, JournalName))
	if errors.Is(err, fs.ErrNotExist) {
		return commitPoint{}, false, nil
	}
	if err != nil {
		return commitPoint{}, false, fmt.Errorf("drain: open dedup journal: %w", err)
	}
	defer f.Close()
	var p commitPoint
	first, any := true, false
	_, err = journalRecords(f, func(body []byte) error {
		if first && body[0] != recSnapshot {
			return errJournal
		}
		first, any = false, true
		x := &dec{b: body[1:]}
		if body[0] == recSnapshot {
			x.n(len(journalMagic) + 2)
		}
		q := x.point()
		if x.bad {
			return errJournal
		}
		p = q
		return nil
	})
	if err != nil {
		return commitPoint{}, false, fmt.Errorf("drain: read dedup journal: %w", err)
	}
	return p, any, nil
}

// journal is the open dedup journal of an output directory. It is owned by
// the committer goroutine (and by Listen before that starts).
type journal struct {
	dir      string
	f        *os.File    // holds an exclusive flock for the drainer's lifetime
	size     int64       // bytes of valid records in f
	point    commitPoint // the commit point of the last record in f
	maxBytes int64       // compact when size passes this
	buf      []byte      // reused encoding buffer
}

// openJournal opens (or creates) the journal in dir, replays it into d, and
// brings the output files in line with it: the committed file is cut back to
// its committed length and files after it, which hold only records that were
// never acknowledged, are removed. It returns the journal and the commit
// point. logf reports what recovery changed.
func openJournal(dir string, d *dedupState, maxBytes int64, logf func(msg string, args ...any)) (*journal, commitPoint, error) {
	path := filepath.Join(dir, JournalName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return nil, commitPoint{}, fmt.Errorf("drain: open dedup journal: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, commitPoint{}, fmt.Errorf("drain: output directory %s: %w (its dedup journal is locked); stop that drainer or choose another --out", dir, ErrOutputInUse)
		}
		return nil, commitPoint{}, fmt.Errorf("drain: lock dedup journal %s: %w", path, err)
	}
	j := &journal{dir: dir, f: f, maxBytes: maxBytes}
	fail := func(err error) (*journal, commitPoint, error) {
		f.Close()
		return nil, commitPoint{}, err
	}
	var p commitPoint
	first := true
	valid, err := journalRecords(f, func(body []byte) error {
		q, err := replayBody(body, d, first)
		if err != nil {
			return err
		}
		first, p = false, q
		return nil
	})
	if err != nil {
		return fail(fmt.Errorf("drain: dedup journal %s: %w", path, err))
	}
	st, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("drain: dedup journal: %w", err))
	}
	if first { // new (or nothing valid in it): start from the files already there
		if st.Size() > 0 {
			return fail(fmt.Errorf("drain: dedup journal %s (%d bytes) does not start with a valid snapshot; it is not a sluice journal or is damaged: move it away to start deduplication afresh (records already in the output may then be written again)", path, st.Size()))
		}
		if p, err = newestFile(dir); err != nil {
			return fail(err)
		}
		j.buf = appendSnapshot(j.buf[:0], p, d)
		if err := j.writeSync(); err != nil {
			return fail(err)
		}
		if err := syncDir(dir); err != nil {
			return fail(err)
		}
		logf("created dedup journal", attrFile, path)
		j.point = p
		return j, p, nil
	}
	if valid < st.Size() {
		logf("dedup journal ends with an incomplete record (a commit cut short by a crash, never acknowledged); dropping it", attrFile, path, attrBytes, st.Size()-valid)
		if err := f.Truncate(valid); err != nil {
			return fail(fmt.Errorf("drain: truncate dedup journal: %w", err))
		}
		if err := f.Sync(); err != nil {
			return fail(fmt.Errorf("drain: sync dedup journal: %w", err))
		}
	}
	j.size = valid
	if _, err := f.Seek(valid, io.SeekStart); err != nil {
		return fail(fmt.Errorf("drain: dedup journal: %w", err))
	}
	if err := recoverOutput(dir, p, logf); err != nil {
		return fail(err)
	}
	j.point = p
	return j, p, nil
}

// newestFile returns the commit point that covers every output file already
// in dir: all of them count as committed (they predate the journal).
func newestFile(dir string) (commitPoint, error) {
	names, err := outputNames(dir)
	if err != nil || len(names) == 0 {
		return commitPoint{}, err
	}
	last := names[len(names)-1]
	st, err := os.Stat(filepath.Join(dir, last))
	if err != nil {
		return commitPoint{}, fmt.Errorf("drain: output file: %w", err)
	}
	return commitPoint{file: last, length: st.Size()}, nil
}

// outputNames returns the output file names in dir, in order.
func outputNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("drain: read output directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		if isOutputName(e) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func isOutputName(e fs.DirEntry) bool {
	name := e.Name()
	return e.Type().IsRegular() && strings.HasPrefix(name, filePrefix) && strings.HasSuffix(name, fileSuffix)
}

// recoverOutput cuts the output back to the commit point p.
func recoverOutput(dir string, p commitPoint, logf func(msg string, args ...any)) error {
	names, err := outputNames(dir)
	if err != nil {
		return err
	}
	changed := false
	for _, name := range names {
		path := filepath.Join(dir, name)
		switch {
		case name < p.file:
		case name == p.file:
			st, err := os.Stat(path)
			if err != nil {
				return fmt.Errorf("drain: output file: %w", err)
			}
			if st.Size() < p.length {
				return fmt.Errorf("drain: output file %s is %d bytes but %d were committed: it was changed outside the drainer or the disk lost acknowledged data; restore it, or move %s away to start deduplication afresh", path, st.Size(), p.length, JournalName)
			}
			if st.Size() > p.length {
				if err := os.Truncate(path, p.length); err != nil {
					return fmt.Errorf("drain: cut uncommitted records from %s: %w", path, err)
				}
				logf("removed records written but never committed (a crash between write and commit)", attrFile, path, attrBytes, st.Size()-p.length)
				changed = true
			}
		default:
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("drain: remove uncommitted output file %s: %w", path, err)
			}
			logf("removed an output file holding only records never committed (a crash between write and commit)", attrFile, path)
			changed = true
		}
	}
	if p.file != "" {
		if _, err := os.Stat(filepath.Join(dir, p.file)); errors.Is(err, fs.ErrNotExist) {
			logf("the newest committed output file is gone (moved away?); continuing", attrFile, p.file)
		}
	}
	if changed {
		if p.file != "" {
			if f, err := os.OpenFile(filepath.Join(dir, p.file), os.O_WRONLY, 0); err == nil {
				err = f.Sync()
				f.Close()
				if err != nil {
					return fmt.Errorf("drain: sync %s: %w", p.file, err)
				}
			}
		}
		return syncDir(dir)
	}
	return nil
}

// commit appends a commit record and syncs the journal, compacting it first
// when it has grown past maxBytes. d must not hold keys yet.
func (j *journal) commit(p commitPoint, keys []msgKey, d *dedupState) error {
	if j.size > j.maxBytes {
		// The snapshot takes the previous commit point: d does not have
		// keys yet, so it must not cover the output that holds them.
		if err := j.compact(j.point, d); err != nil {
			return err
		}
	}
	j.buf = appendCommit(j.buf[:0], p, keys)
	if err := j.writeSync(); err != nil {
		return err
	}
	j.point = p
	return nil
}

func (j *journal) writeSync() error {
	if _, err := j.f.Write(j.buf); err != nil {
		return fmt.Errorf("drain: write dedup journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("drain: sync dedup journal: %w", err)
	}
	j.size += int64(len(j.buf))
	return nil
}

// compact replaces the journal with a single snapshot of d at p. The new file is written beside the old one, synced,
// then renamed over it, so a crash leaves one or the other.
func (j *journal) compact(p commitPoint, d *dedupState) error {
	tmp := filepath.Join(j.dir, JournalName+".tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, fileMode)
	if err != nil {
		return fmt.Errorf("drain: compact dedup journal: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("drain: compact dedup journal: lock: %w", err)
	}
	j.buf = appendSnapshot(j.buf[:0], p, d)
	_, err = f.Write(j.buf)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(j.dir, JournalName))
	}
	if err == nil {
		err = syncDir(j.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("drain: compact dedup journal: %w", err)
	}
	j.f.Close()
	j.f, j.size = f, int64(len(j.buf))
	// A snapshot bigger than the bound would compact on every commit.
	j.maxBytes = max(j.maxBytes, 2*j.size)
	return nil
}

func (j *journal) close() error {
	return j.f.Close()
}

// syncDir fsyncs a directory, making its entries (new, renamed or removed
// files) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("drain: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("drain: sync directory %s: %w", dir, err)
	}
	return nil
}
