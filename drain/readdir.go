package drain

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ReadDir calls fn with every line of the drainer's output files in dir
// (sluice-*.jsonl), file after file in name order, which is the order they
// were written. line excludes its newline and is valid only during the call.
// A last line without a newline (a write cut short by a crash) is passed
// too, so a caller can see it. ReadDir stops at the first error fn returns
// and returns it wrapped with the file's name; errors.Is sees through.
func ReadDir(dir string, fn func(line []byte) error) error {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return fmt.Errorf("drain: read output directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, filePrefix) || !strings.HasSuffix(name, fileSuffix) {
			continue
		}
		if err := readFile(filepath.Join(dir, name), fn); err != nil {
			return err
		}
	}
	return nil
}

func readFile(path string, fn func(line []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("drain: read output: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 256<<10)
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
