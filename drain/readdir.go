package drain

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ReadDir calls fn with every line of the drainer's output files in dir
// (sluice-*.jsonl), file after file in name order, which is the order they
// were written. line excludes its newline and is valid only during the call.
// A last line without a newline (a write cut short by a crash) is passed
// too, so a caller can see it. ReadDir stops at the first error fn returns
// and returns it wrapped with the file's name; errors.Is sees through.
//
// When dir holds a dedup journal (acked framing), ReadDir returns only what
// it records as committed: records written after the last commit (and not
// acknowledged, or cut short by a crash) are left out, as a restarted
// drainer would remove them. The journal itself is never returned.
func ReadDir(dir string, fn func(line []byte) error) error {
	point, journaled, err := readCommitPoint(dir)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return fmt.Errorf("drain: read output directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !isOutputName(e) {
			continue
		}
		limit := int64(-1)
		if journaled {
			if name > point.file {
				break // nothing committed in it or after it
			}
			if name == point.file {
				limit = point.length
			}
		}
		if err := readFile(filepath.Join(dir, name), limit, fn); err != nil {
			return err
		}
	}
	return nil
}

// readFile reads the lines of the first limit bytes of path (all of it with
// a negative limit).
func readFile(path string, limit int64, fn func(line []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("drain: read output: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if limit >= 0 {
		r = io.LimitReader(f, limit)
	}
	br := bufio.NewReaderSize(r, 256<<10)
	var long []byte // assembles a line longer than the reader's buffer
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, chunk...)
			continue
		}
		line := chunk
		if len(long) > 0 {
			line = append(long, chunk...)
			long = long[:0]
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
			if ferr := fn(line); ferr != nil {
				return fmt.Errorf("drain: %s: %w", path, ferr)
			}
		} else if n > 0 {
			if ferr := fn(line); ferr != nil {
				return fmt.Errorf("drain: %s (unterminated last line): %w", path, ferr)
			}
		}
		switch {
		case err == io.EOF:
			return nil
		case err != nil:
			return fmt.Errorf("drain: read %s: %w", path, err)
		}
	}
}
