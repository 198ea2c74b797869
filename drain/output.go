package drain

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-dev/sluice/ledger"
)

// writeBuf is the output's write buffer.
const writeBuf = 256 << 10

// output is where complete lines go: stdout, or size-rotated files in a
// directory, named and laid out as package ledger says. Every method is safe for concurrent use; mu serialises them, and
// is held across the file I/O on purpose: it exists to serialise the output.
type output struct {
	dir       string // "" for a plain writer (stdout)
	rotate    int64  // rotation threshold in bytes; 0 with dir == ""
	now       func() time.Time
	onNewFile func(name string, rotated bool)

	mu     sync.Mutex
	w      *bufio.Writer // guarded by mu; nil until the first file is open
	f      *os.File      // guarded by mu; the current file, nil for stdout or between files
	size   int64         // guarded by mu; bytes written to f (or to the last file) so far
	name   string        // guarded by mu; base name of f, or of the last file when f is nil
	newDir bool          // guarded by mu; a file was created since the directory was last synced
	lastTS time.Time     // guarded by mu; time part of the newest file name
	seq    int           // guarded by mu; sequence of the newest file name
	err    error         // guarded by mu; sticky: the first write failure
	iov    [][]byte      // guarded by mu; writeLines's scratch
	closed bool          // guarded by mu
}

// newStdout returns an output that writes to w.
func newStdout(w io.Writer) *output {
	return &output{w: bufio.NewWriterSize(w, writeBuf), now: time.Now}
}

// newDirOutput prepares dir (created 0700 when missing) and returns an output
// writing files into it. Files are created on the first write, so a drainer
// that receives nothing leaves no empty files. The newest existing
// output file name (ledger.ParseFileName) sets the floor for new names, so name order stays write
// order across restarts even if the clock steps back.
func newDirOutput(dir string, rotate int64) (*output, error) {
	if err := os.MkdirAll(dir, ledger.DirPerm); err != nil {
		return nil, fmt.Errorf("drain: create output directory: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("drain: output directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("drain: output %s is not a directory: give a directory for --out, or - for stdout", dir)
	}
	o := &output{dir: dir, rotate: rotate, now: time.Now}
	// Probe writability now rather than at the first record.
	probe, err := os.CreateTemp(dir, ".sluice-probe-*")
	if err != nil {
		return nil, fmt.Errorf("drain: output directory %s is not writable: %w", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("drain: read output directory: %w", err)
	}
	for _, e := range entries {
		if ts, seq, ok := ledger.ParseFileName(e.Name()); ok && (ts.After(o.lastTS) || ts.Equal(o.lastTS) && seq > o.seq) {
			o.lastTS, o.seq = ts, seq
		}
	}
	return o, nil
}

// nextName returns the name for a new file: later than every name before,
// since its time part never goes backwards.
func (o *output) nextName() string {
	ts := o.now().UTC().Truncate(time.Millisecond)
	if ts.Before(o.lastTS) {
		ts = o.lastTS
	}
	o.lastTS = ts
	o.seq++
	return ledger.FileName(ts, o.seq)
}

// write appends p, which holds whole lines only, as one unit: no other
// write lands in the middle of it. A file is cut at line boundaries when it
// would pass the rotation size. An error is sticky: the output is unusable
// afterwards.
func (o *output) write(p []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	if o.closed {
		return fmt.Errorf("drain: write after the output was closed")
	}
	if o.dir == "" {
		if _, err := o.w.Write(p); err != nil {
			o.err = fmt.Errorf("drain: write to stdout: %w", err)
		}
		return o.err
	}
	for len(p) > 0 {
		if o.f == nil {
			if err := o.openLocked(); err != nil {
				return err
			}
		}
		n := len(p)
		if room := o.rotate - o.size; int64(n) > room {
			// Cut at the last newline that fits; with none, a file that
			// already holds data is rotated first, and an empty one takes
			// the whole oversized line.
			cut := 0
			if room > 0 {
				cut = bytes.LastIndexByte(p[:room], '\n') + 1
			}
			if cut == 0 {
				if o.size > 0 {
					if err := o.rotateLocked(); err != nil {
						return err
					}
					continue
				}
				cut = bytes.IndexByte(p, '\n') + 1
				if cut == 0 {
					cut = len(p)
				}
			}
			n = cut
		}
		if _, err := o.w.Write(p[:n]); err != nil {
			o.err = fmt.Errorf("drain: write %s: %w", o.f.Name(), err)
			return o.err
		}
		o.size += int64(n)
		p = p[n:]
		if o.size >= o.rotate {
			if err := o.rotateLocked(); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeLines appends each of lines followed by a newline, as one unit like
// write, cutting files at line boundaries the same way. Into a file it
// writes straight from lines with writev (as few calls as IOV_MAX allows),
// after what write left in the buffer: no copy in Go.
func (o *output) writeLines(lines [][]byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	if o.closed {
		return fmt.Errorf("drain: write after the output was closed")
	}
	if o.dir == "" {
		for _, l := range lines {
			_, err := o.w.Write(l)
			if err == nil {
				err = o.w.WriteByte('\n')
			}
			if err != nil {
				o.err = fmt.Errorf("drain: write to stdout: %w", err)
				return o.err
			}
		}
		return nil
	}
	for len(lines) > 0 {
		if o.f == nil {
			if err := o.openLocked(); err != nil {
				return err
			}
		}
		// The lines that fit before rotation; an empty file takes at
		// least one, however long.
		o.iov = o.iov[:0]
		n, k := int64(0), 0
		for ; k < len(lines) && len(o.iov) < maxIOV; k++ {
			l := int64(len(lines[k]) + 1)
			if o.size+n+l > o.rotate && (n > 0 || o.size > 0) {
				break
			}
			o.iov = append(o.iov, lines[k], newline)
			n += l
		}
		if k == 0 {
			if err := o.rotateLocked(); err != nil {
				return err
			}
			continue
		}
		if err := o.w.Flush(); err != nil {
			o.err = fmt.Errorf("drain: write %s: %w", o.f.Name(), err)
			return o.err
		}
		err := writev(o.f, o.iov)
		clear(o.iov)
		if err != nil {
			o.err = fmt.Errorf("drain: write %s: %w", o.f.Name(), err)
			return o.err
		}
		o.size += n
		lines = lines[k:]
		if o.size >= o.rotate {
			if err := o.rotateLocked(); err != nil {
				return err
			}
		}
	}
	return nil
}

// maxIOV is the most buffers one writev takes here: Linux's IOV_MAX is
// 1024, two a line.
const maxIOV = 1024

var newline = []byte{'\n'}

// writev writes every byte of iov to f, with as few writev calls as the
// kernel allows (it may write less than asked).
func writev(f *os.File, iov [][]byte) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for len(iov) > 0 {
		var n int
		var werr error
		if err := rc.Write(func(fd uintptr) bool {
			for {
				n, werr = unix.Writev(int(fd), iov)
				if werr != unix.EINTR {
					return true
				}
			}
		}); err != nil {
			return err
		}
		if werr != nil {
			return werr
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		for n > 0 && len(iov) > 0 {
			if n < len(iov[0]) {
				iov[0] = iov[0][n:]
				break
			}
			n -= len(iov[0])
			iov = iov[1:]
		}
		for len(iov) > 0 && len(iov[0]) == 0 {
			iov = iov[1:]
		}
	}
	return nil
}

// openLocked creates the next output file.
func (o *output) openLocked() error {
	for range 100 {
		name := filepath.Join(o.dir, o.nextName())
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, ledger.FilePerm)
		if errors.Is(err, fs.ErrExist) {
			continue // never overwrite; take the next sequence number
		}
		if err != nil {
			o.err = fmt.Errorf("drain: create output file: %w", err)
			return o.err
		}
		o.f, o.size, o.name, o.newDir = f, 0, filepath.Base(name), true
		if o.w == nil {
			o.w = bufio.NewWriterSize(f, writeBuf)
		} else {
			o.w.Reset(f)
		}
		if o.onNewFile != nil {
			o.onNewFile(name, false)
		}
		return nil
	}
	o.err = fmt.Errorf("drain: create output file in %s: 100 candidate names already exist", o.dir)
	return o.err
}

// rotateLocked finishes the current file (flush, fsync, close); the next
// write opens a new one.
func (o *output) rotateLocked() error {
	name := o.f.Name()
	if err := o.finishLocked(); err != nil {
		return err
	}
	if o.onNewFile != nil {
		o.onNewFile(name, true)
	}
	return nil
}

// finishLocked flushes, syncs and closes the current file.
func (o *output) finishLocked() error {
	f := o.f
	o.f = nil
	err := o.w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil && o.err == nil {
		o.err = fmt.Errorf("drain: finish output file %s: %w", f.Name(), err)
	}
	return o.err
}

// flush hands buffered lines to the file or stdout.
func (o *output) flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.flushLocked()
}

func (o *output) flushLocked() error {
	if o.err != nil || o.closed || o.w == nil || o.w.Buffered() == 0 {
		return o.err
	}
	if err := o.w.Flush(); err != nil {
		where := "stdout"
		if o.f != nil {
			where = o.f.Name()
		}
		o.err = fmt.Errorf("drain: write %s: %w", where, err)
	}
	return o.err
}

// sync makes everything written so far durable (flush, fsync of the current
// file, and of the directory when a file was created since the last sync)
// and returns the commit point it reached. For stdout it only flushes.
func (o *output) sync() (ledger.Point, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return ledger.Point{}, o.err
	}
	if o.dir == "" {
		return ledger.Point{}, o.flushLocked()
	}
	if o.f != nil {
		if err := o.w.Flush(); err != nil {
			o.err = fmt.Errorf("drain: write %s: %w", o.f.Name(), err)
			return ledger.Point{}, o.err
		}
		if err := o.f.Sync(); err != nil {
			o.err = fmt.Errorf("drain: fsync %s: %w", o.f.Name(), err)
			return ledger.Point{}, o.err
		}
	}
	if o.newDir {
		if err := ledger.SyncDir(o.dir); err != nil {
			o.err = err
			return ledger.Point{}, o.err
		}
		o.newDir = false
	}
	return ledger.Point{File: o.name, Length: o.size}, nil
}

// close flushes and closes the current file (stdout is flushed, not
// closed). It is idempotent and returns the output's first error.
func (o *output) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return o.err
	}
	if o.f != nil {
		o.finishLocked()
	} else {
		o.flushLocked()
	}
	o.closed = true
	return o.err
}
