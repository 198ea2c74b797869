package ledger

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ReadCommitted calls fn with every line of the drainer's output files in
// dir (sluice-*.jsonl), file after file in name order, which is the order
// they were written. line excludes its newline and is valid only during the
// call. ReadCommitted stops at the first error fn returns and returns it
// wrapped with the file's name; errors.Is sees through.
//
// When dir holds a dedup journal (acked framing), ReadCommitted returns
// only what the journal records as committed: records written after the
// last commit (and not acknowledged, or cut short by a crash) are left out,
// as a drainer's Open would remove them. Without a journal (lines framing)
// every line is returned, and a last line without a newline (a write cut
// short by a crash) is passed too, so a caller can see it. The journal
// itself is never returned, and ReadCommitted changes nothing in dir.
func ReadCommitted(dir string, fn func(line []byte) error) error {
	point, journaled, err := readCommitPoint(dir)
	if err != nil {
		return err
	}
	names, err := outputNames(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		limit := int64(-1)
		if journaled {
			if name > point.File {
				break // nothing committed in it or after it
			}
			if name == point.File {
				limit = point.Length
			}
		}
		if err := readFile(filepath.Join(dir, name), limit, fn); err != nil {
			return err
		}
	}
	return nil
}

// readCommitPoint returns the commit point of the journal in dir, and
// whether there is a journal at all. It changes nothing.
func readCommitPoint(dir string) (Point, bool, error) {
	f, err := os.Open(filepath.Join(dir, JournalName))
	if errors.Is(err, fs.ErrNotExist) {
		return Point{}, false, nil
	}
	if err != nil {
		return Point{}, false, fmt.Errorf("ledger: open dedup journal: %w", err)
	}
	defer f.Close()
	var p Point
	first, any := true, false
	_, err = journalRecords(f, func(body []byte) error {
		q, err := recordPoint(body, first)
		if err != nil {
			return err
		}
		first, any, p = false, true, q
		return nil
	})
	if err != nil {
		return Point{}, false, fmt.Errorf("ledger: read dedup journal: %w", err)
	}
	return p, any, nil
}

// readFile reads the lines of the first limit bytes of path (all of it with
// a negative limit).
func readFile(path string, limit int64, fn func(line []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("ledger: read output: %w", err)
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
				return fmt.Errorf("ledger: %s: %w", path, ferr)
			}
		} else if n > 0 {
			if ferr := fn(line); ferr != nil {
				return fmt.Errorf("ledger: %s (unterminated last line): %w", path, ferr)
			}
		}
		switch {
		case err == io.EOF:
			return nil
		case err != nil:
			return fmt.Errorf("ledger: read %s: %w", path, err)
		}
	}
}
