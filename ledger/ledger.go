package ledger

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/record"
)

// JournalName is the dedup journal's file name in an output directory.
// ReadCommitted and readers of *.jsonl files never see it.
const JournalName = "sluice-dedup.journal"

// Defaults for the zero values of Options.
const (
	DefaultDedupSpans   = 1 << 20
	DefaultJournalBytes = 64 << 20
)

// Options configures a Ledger. The zero value of each field means the
// default given in its comment.
type Options struct {
	// DedupSpans bounds the dedup memory: per stream incarnation, a
	// low-water mark and at most DedupSpans ranges of committed sequences
	// above it. Past the bound the lowest range is forgotten. Zero:
	// DefaultDedupSpans (1 Mi ranges).
	DedupSpans int
	// JournalBytes is the size past which the journal is compacted into a
	// snapshot. Zero: DefaultJournalBytes (64 MiB).
	JournalBytes int64
	// Logger receives what recovery changed on Open. Nil: discarded.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.DedupSpans <= 0 {
		o.DedupSpans = DefaultDedupSpans
	}
	if o.JournalBytes <= 0 {
		o.JournalBytes = DefaultJournalBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Ledger is what a drainer has committed: the set of committed messages
// (the dedup state) and, for a directory, the journal that keeps it
// durable together with the output's commit point.
//
// Has, Commit, Entries, Fence, Forget and Close belong to one goroutine
// (the drainer's committer); Committed, Fenced and Fences may be called
// from any goroutine at any time.
type Ledger struct {
	dir      string   // "" for a memory-only ledger
	f        *os.File // the journal; holds an exclusive flock for the Ledger's lifetime; nil in memory
	size     int64    // bytes of valid records in f
	point    Point    // the commit point of the last record in f
	maxBytes int64    // compact when size passes this
	buf      []byte   // reused encoding buffer

	mu     sync.RWMutex // written by Commit's update of d, Fence and Forget; read by Committed, Fenced and Fences
	d      *state       // Has reads it without mu: only Commit and Forget, on the same goroutine, write it
	fences []Rewind     // refused rewinds (RewindName); replaced, never changed in place
}

// NewMemory returns a Ledger that keeps the dedup state in memory only
// (a drainer writing to stdout): nothing survives the process.
func NewMemory(opts Options) *Ledger {
	opts = opts.withDefaults()
	return &Ledger{d: newState(opts.DedupSpans)}
}

// Open opens (or creates) the journal in the output directory dir, which
// must exist, locks it (ErrInUse if another process holds it), replays it,
// and brings the output files in line with it: a torn last journal record
// is dropped, the committed file is cut back to its committed length, and
// files after it, which hold only records never committed, are removed. A
// new journal takes every output file already in dir as committed. A
// journal of an older version is rewritten in the current one.
func Open(dir string, opts Options) (*Ledger, error) {
	opts = opts.withDefaults()
	log := opts.Logger
	path := filepath.Join(dir, JournalName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, FilePerm)
	if err != nil {
		return nil, fmt.Errorf("ledger: open dedup journal: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("ledger: output directory %s: %w (its dedup journal is locked); stop that drainer or choose another --out", dir, ErrInUse)
		}
		return nil, fmt.Errorf("ledger: lock dedup journal %s: %w", path, err)
	}
	l := &Ledger{dir: dir, f: f, maxBytes: opts.JournalBytes, d: newState(opts.DedupSpans)}
	fail := func(err error) (*Ledger, error) {
		f.Close()
		return nil, err
	}
	if l.fences, err = readFences(dir); err != nil {
		return fail(err)
	}
	r := &replay{d: l.d}
	valid, err := journalRecords(f, r.apply)
	if err != nil {
		return fail(fmt.Errorf("ledger: dedup journal %s: %w", path, err))
	}
	st, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("ledger: dedup journal: %w", err))
	}
	if r.version == 0 { // new (or nothing valid in it): start from the files already there
		if st.Size() > 0 {
			return fail(fmt.Errorf("ledger: dedup journal %s (%d bytes): %w: it is not a sluice journal or is damaged: move it away to start deduplication afresh (records already in the output may then be written again)", path, st.Size(), ErrDamaged))
		}
		p, err := newestFile(dir)
		if err != nil {
			return fail(err)
		}
		l.buf = appendSnapshot(l.buf[:0], p, l.d)
		if err := l.writeSync(); err != nil {
			return fail(err)
		}
		if err := SyncDir(dir); err != nil {
			return fail(err)
		}
		log.Info("created dedup journal", obs.KeyFile, path)
		l.point = p
		return l, nil
	}
	if valid < st.Size() {
		log.Info("dedup journal ends with an incomplete record (a commit cut short by a crash, never acknowledged); dropping it", obs.KeyFile, path, obs.KeyBytes, st.Size()-valid)
		if err := f.Truncate(valid); err != nil {
			return fail(fmt.Errorf("ledger: truncate dedup journal: %w", err))
		}
		if err := f.Sync(); err != nil {
			return fail(fmt.Errorf("ledger: sync dedup journal: %w", err))
		}
	}
	l.size = valid
	if _, err := f.Seek(valid, io.SeekStart); err != nil {
		return fail(fmt.Errorf("ledger: dedup journal: %w", err))
	}
	if err := recoverOutput(dir, r.point, log); err != nil {
		return fail(err)
	}
	l.point = r.point
	if r.version < journalVersion {
		// Commits of this version must not follow an older snapshot.
		if err := l.compact(l.point); err != nil {
			return fail(err)
		}
		log.Info("dedup journal rewritten in the current version", obs.KeyFile, path, obs.KeyFromVersion, r.version, obs.KeyVersion, journalVersion)
	}
	return l, nil
}

// newestFile returns the commit point that covers every output file already
// in dir: all of them count as committed (they predate the journal).
func newestFile(dir string) (Point, error) {
	names, err := outputNames(dir)
	if err != nil || len(names) == 0 {
		return Point{}, err
	}
	last := names[len(names)-1]
	st, err := os.Stat(filepath.Join(dir, last))
	if err != nil {
		return Point{}, fmt.Errorf("ledger: output file: %w", err)
	}
	return Point{File: last, Length: st.Size()}, nil
}

// recoverOutput cuts the output back to the commit point p.
func recoverOutput(dir string, p Point, log *slog.Logger) error {
	names, err := outputNames(dir)
	if err != nil {
		return err
	}
	changed := false
	for _, name := range names {
		path := filepath.Join(dir, name)
		switch {
		case name < p.File:
		case name == p.File:
			st, err := os.Stat(path)
			if err != nil {
				return fmt.Errorf("ledger: output file: %w", err)
			}
			if st.Size() < p.Length {
				return fmt.Errorf("ledger: output file %s is %d bytes but %d were committed: %w: it was changed outside the drainer or the disk lost acknowledged data; restore it, or move %s away to start deduplication afresh", path, st.Size(), p.Length, ErrDamaged, JournalName)
			}
			if st.Size() > p.Length {
				if err := os.Truncate(path, p.Length); err != nil {
					return fmt.Errorf("ledger: cut uncommitted records from %s: %w", path, err)
				}
				log.Info("removed records written but never committed (a crash between write and commit)", obs.KeyFile, path, obs.KeyBytes, st.Size()-p.Length)
				changed = true
			}
		default:
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("ledger: remove uncommitted output file %s: %w", path, err)
			}
			log.Info("removed an output file holding only records never committed (a crash between write and commit)", obs.KeyFile, path)
			changed = true
		}
	}
	if p.File != "" {
		if _, err := os.Stat(filepath.Join(dir, p.File)); errors.Is(err, fs.ErrNotExist) {
			log.Info("the newest committed output file is gone (moved away?); continuing", obs.KeyFile, p.File)
		}
	}
	if changed {
		if p.File != "" {
			if f, err := os.OpenFile(filepath.Join(dir, p.File), os.O_WRONLY, 0); err == nil {
				err = f.Sync()
				f.Close()
				if err != nil {
					return fmt.Errorf("ledger: sync %s: %w", p.File, err)
				}
			}
		}
		return SyncDir(dir)
	}
	return nil
}

// Point returns the commit point of the last commit recorded (the zero
// Point for none, and for a memory-only Ledger).
func (l *Ledger) Point() Point { return l.point }

// Has reports whether the message id is committed.
func (l *Ledger) Has(id record.MsgID) bool { return l.d.has(id) }

// Commit records that the output is durable up to p and that ids are
// committed messages: it appends a commit record to the journal and syncs
// it (compacting the journal first when it has grown past
// Options.JournalBytes), then adds ids to the dedup state. A memory-only
// Ledger ignores p. ids is reordered in place (grouped by stream
// incarnation, stably). It returns how many ranges of committed sequences
// the dedup bound forgot. After an error the journal may hold a partial
// record, which the next Open drops: the caller must acknowledge nothing
// of this commit and stop committing.
func (l *Ledger) Commit(p Point, ids []record.MsgID) (evicted int, err error) {
	sortForCommit(ids)
	if l.f != nil {
		if l.size > l.maxBytes {
			// The snapshot takes the previous commit point: the state
			// does not hold ids yet, so it must not cover the output
			// that holds them.
			if err := l.compact(l.point); err != nil {
				return 0, err
			}
		}
		l.buf = appendCommit(l.buf[:0], p, ids)
		if err := l.writeSync(); err != nil {
			return 0, err
		}
		l.point = p
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		evicted += l.d.add(id)
	}
	return evicted, nil
}

// Committed returns the highest committed sequence of the incarnation
// epoch of stream, and false when nothing of it is committed. A drainer
// can compare it with a producer's view of the stream at connect time to
// tell that the stream's sequences went back.
func (l *Ledger) Committed(stream string, epoch uint64) (highest uint64, ok bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	s := l.d.streams[incarnation{stream, epoch}]
	if s == nil {
		return 0, false
	}
	h := s.highest()
	return h, h > 0
}

// Entries returns the size of the dedup state: one entry per stream
// incarnation plus one per range of committed sequences.
func (l *Ledger) Entries() int { return l.d.entries() }

// Close releases the journal (and its lock). It does not sync: every
// Commit already has.
func (l *Ledger) Close() error {
	if l.f == nil {
		return nil
	}
	return l.f.Close()
}

func (l *Ledger) writeSync() error {
	if _, err := l.f.Write(l.buf); err != nil {
		return fmt.Errorf("ledger: write dedup journal: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("ledger: sync dedup journal: %w", err)
	}
	l.size += int64(len(l.buf))
	return nil
}

// compact replaces the journal with a single snapshot of the state at p.
// The new file is written beside the old one, synced, then renamed over
// it, so a crash leaves one or the other.
func (l *Ledger) compact(p Point) error {
	tmp := filepath.Join(l.dir, JournalName+".tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, FilePerm)
	if err != nil {
		return fmt.Errorf("ledger: compact dedup journal: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("ledger: compact dedup journal: lock: %w", err)
	}
	l.buf = appendSnapshot(l.buf[:0], p, l.d)
	_, err = f.Write(l.buf)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(l.dir, JournalName))
	}
	if err == nil {
		err = SyncDir(l.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("ledger: compact dedup journal: %w", err)
	}
	l.f.Close()
	l.f, l.size = f, int64(len(l.buf))
	// A snapshot bigger than the bound would compact on every commit.
	l.maxBytes = max(l.maxBytes, 2*l.size)
	return nil
}
