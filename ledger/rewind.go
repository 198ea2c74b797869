package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// RewindName is the file in an output directory that lists the stream
// incarnations whose rewind the drainer refused (its fences). Like the
// journal, it is not output.
const RewindName = "sluice-rewound.json"

// Rewind is a refused rewind of one stream incarnation: at Detected a
// producer said the queue's last sequence of Stream (epoch Epoch) was
// LastSeq, below Committed, the highest sequence the drainer had committed
// of it. The queue lost messages (its store's tail in a crash, a restore
// from backup) and will hand out sequences LastSeq+1… again for new
// messages, which the dedup state would drop as duplicates of the old ones.
//
// A fence stays until the operator accepts the rewind (Forget): until then
// the drainer refuses the incarnation even once the queue's sequences have
// passed Committed again, since the messages above LastSeq are new ones it
// would drop.
type Rewind struct {
	Stream    string    `json:"stream"`
	Epoch     uint64    `json:"epoch"`
	LastSeq   uint64    `json:"last_seq"`
	Committed uint64    `json:"committed"`
	Detected  time.Time `json:"detected"`
}

// rewindFile is RewindName's content.
type rewindFile struct {
	Version int      `json:"version"`
	Fences  []Rewind `json:"fences"`
}

const rewindVersion = 1

// Fences returns the refused rewinds, in the order they were recorded.
func (l *Ledger) Fences() []Rewind {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return slices.Clone(l.fences)
}

// Fenced returns the refused rewind of the incarnation epoch of stream, if
// there is one.
func (l *Ledger) Fenced(stream string, epoch uint64) (Rewind, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, r := range l.fences {
		if r.Stream == stream && r.Epoch == epoch {
			return r, true
		}
	}
	return Rewind{}, false
}

// Fence records r durably (for a directory: RewindName is rewritten and
// synced before Fence returns), replacing an earlier fence of the same
// incarnation. Like Commit, it belongs to the committer's goroutine.
func (l *Ledger) Fence(r Rewind) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	fences := slices.DeleteFunc(slices.Clone(l.fences), func(f Rewind) bool { return f.Stream == r.Stream && f.Epoch == r.Epoch })
	fences = append(fences, r)
	if err := l.writeFences(fences); err != nil {
		return err
	}
	l.fences = fences
	return nil
}

// Forget accepts a rewind of the incarnation epoch of stream: it forgets
// every committed sequence above lastSeq, so that the queue's new messages
// with those sequences are written, and removes the incarnation's fence.
// The output is not touched (the records of the lost messages stay in it).
// For a directory the forgotten state is made durable first (the journal
// is compacted into a snapshot of it) and the fence removed after, so a
// crash in between leaves the fence, and the next Forget finds nothing
// more to forget. Like Commit, it belongs to the committer's goroutine.
func (l *Ledger) Forget(stream string, epoch uint64, lastSeq uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.d.forgetAbove(incarnation{stream, epoch}, lastSeq)
	if l.f != nil {
		if err := l.compact(l.point); err != nil {
			return err
		}
	}
	fences := slices.DeleteFunc(slices.Clone(l.fences), func(f Rewind) bool { return f.Stream == stream && f.Epoch == epoch })
	if len(fences) == len(l.fences) {
		return nil
	}
	if err := l.writeFences(fences); err != nil {
		return err
	}
	l.fences = fences
	return nil
}

// writeFences replaces RewindName with fences: written beside it, synced,
// renamed over it; removed when fences is empty. A memory-only Ledger keeps
// its fences in memory.
func (l *Ledger) writeFences(fences []Rewind) error {
	if l.dir == "" {
		return nil
	}
	path := filepath.Join(l.dir, RewindName)
	if len(fences) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("ledger: remove %s: %w", path, err)
		}
		return SyncDir(l.dir)
	}
	b, err := json.MarshalIndent(rewindFile{Version: rewindVersion, Fences: fences}, "", "  ")
	if err != nil {
		return fmt.Errorf("ledger: encode %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := writeFileSync(tmp, append(b, '\n')); err != nil {
		return fmt.Errorf("ledger: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("ledger: replace %s: %w", path, err)
	}
	return SyncDir(l.dir)
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, FilePerm)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readFences reads dir's RewindName; none is no fence.
func readFences(dir string) ([]Rewind, error) {
	path := filepath.Join(dir, RewindName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: read %s: %w", path, err)
	}
	var rf rewindFile
	if err := json.Unmarshal(b, &rf); err != nil || rf.Version != rewindVersion {
		if err == nil {
			err = fmt.Errorf("version %d, want %d", rf.Version, rewindVersion)
		}
		return nil, fmt.Errorf("ledger: %s: %w (%v): it lists stream rewinds the drainer refused; restore it, or remove it to accept every rewind it listed (the drainer then drops the queue's new messages that reuse lost sequences as duplicates)", path, ErrDamaged, err)
	}
	for _, r := range rf.Fences {
		if r.Stream == "" {
			return nil, fmt.Errorf("ledger: %s: %w: a fence without a stream name: restore the file, or remove it", path, ErrDamaged)
		}
	}
	return rf.Fences, nil
}
