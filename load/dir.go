package load

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// VerifyDir feeds v every line of the *.jsonl files in dir, in file name
// order (the drainer names its files so that name order is write order).
// Each line is observed with its file's modification time as the drain
// time, so the latencies are upper bounds (see the package doc). Other
// files and subdirectories are ignored; a directory without *.jsonl files
// is ErrNoFiles.
func VerifyDir(dir string, v *Verifier) error {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return fmt.Errorf("load: verify dir: %w", err)
	}
	n := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".jsonl") {
			continue
		}
		n++
		if err := verifyFile(filepath.Join(dir, e.Name()), v); err != nil {
			return err
		}
	}
	if n == 0 {
		return fmt.Errorf("%w in %s", ErrNoFiles, dir)
	}
	return nil
}

// verifyFile observes every line of one file. A last line without a newline
// is observed too.
func verifyFile(path string, v *Verifier) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load: verify: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("load: verify: %w", err)
	}
	return observeLines(f, st.ModTime(), v, path)
}

func observeLines(r io.Reader, mtime time.Time, v *Verifier, name string) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte // assembles lines longer than the buffer
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, chunk...)
			continue
		}
		line := chunk
		if long != nil {
			line = append(long, chunk...)
		}
		if len(line) > 0 {
			line = line[:len(line)-trimEOL(line)]
			v.Observe(line, mtime)
		}
		long = nil
		switch {
		case err == io.EOF:
			return nil
		case err != nil:
			return fmt.Errorf("load: verify %s: %w", name, err)
		}
	}
}

// trimEOL returns how many bytes of line end ("\n" or "\r\n") to drop.
func trimEOL(line []byte) int {
	n := len(line)
	if n > 0 && line[n-1] == '\n' {
		if n > 1 && line[n-2] == '\r' {
			return 2
		}
		return 1
	}
	return 0
}
