package load

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// Tail follows a drainer's output directory while it is being written: each
// Poll hands over the complete lines appended to its *.jsonl files since the
// previous Poll, in file-name order. A line still being written (no newline
// yet) waits for a later Poll. Tail is not safe for concurrent use.
type Tail struct {
	dir     string
	offsets map[string]int64  // bytes consumed per file
	partial map[string][]byte // an incomplete last line per file
	buf     []byte
}

// NewTail returns a Tail of dir; the directory need not exist yet.
func NewTail(dir string) *Tail {
	return &Tail{dir: dir, offsets: map[string]int64{}, partial: map[string][]byte{}, buf: make([]byte, 256<<10)}
}

// Poll calls fn for every complete line appended since the last call and
// returns how many it handed over. The slice passed to fn is only valid
// during the call.
func (t *Tail) Poll(fn func(line []byte)) (int, error) {
	names, err := filepath.Glob(filepath.Join(t.dir, "*.jsonl"))
	if err != nil {
		return 0, err
	}
	sort.Strings(names)
	var n int
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return n, err
		}
		off := t.offsets[name]
		for {
			k, rerr := f.ReadAt(t.buf, off)
			off += int64(k)
			chunk := t.buf[:k]
			for len(chunk) > 0 {
				i := bytes.IndexByte(chunk, '\n')
				if i < 0 {
					t.partial[name] = append(t.partial[name], chunk...)
					break
				}
				line := chunk[:i]
				if p := t.partial[name]; len(p) > 0 {
					line = append(p, line...)
					t.partial[name] = p[:0]
				}
				fn(bytes.TrimSuffix(line, []byte{'\r'}))
				n++
				chunk = chunk[i+1:]
			}
			if rerr != nil || k == 0 {
				if rerr != nil && rerr != io.EOF {
					f.Close()
					return n, rerr
				}
				break
			}
		}
		t.offsets[name] = off
		f.Close()
	}
	return n, nil
}
