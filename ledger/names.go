package ledger

import (
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// Output file names: FilePrefix + UTC time (millisecond, fixed width) + "Z-"
// + sequence (at least 6 digits) + FileSuffix, e.g.
// sluice-20250101T000000.000Z-000001.jsonl. Name order is write order as
// long as the writer never lets the time part go backwards.
const (
	FilePrefix = "sluice-"
	FileSuffix = ".jsonl"
	timeLayout = "20060102T150405.000" // followed by a literal "Z"
)

// Permissions of the output directory and of the files in it (output
// files and the journal).
const (
	DirPerm  = 0o700
	FilePerm = 0o600
)

// FileName returns the name of an output file created at ts (taken in UTC,
// truncated to the millisecond) with sequence seq.
func FileName(ts time.Time, seq int) string {
	return fmt.Sprintf("%s%sZ-%06d%s", FilePrefix, ts.UTC().Truncate(time.Millisecond).Format(timeLayout), seq, FileSuffix)
}

// ParseFileName parses an output file name made by FileName.
func ParseFileName(name string) (ts time.Time, seq int, ok bool) {
	rest, found := strings.CutPrefix(name, FilePrefix)
	if !found {
		return ts, 0, false
	}
	if rest, found = strings.CutSuffix(rest, FileSuffix); !found {
		return ts, 0, false
	}
	tpart, spart, found := strings.Cut(rest, "Z-")
	if !found {
		return ts, 0, false
	}
	ts, err := time.Parse(timeLayout, tpart)
	if err != nil {
		return ts, 0, false
	}
	seq, err = strconv.Atoi(spart)
	if err != nil || seq < 0 {
		return ts, 0, false
	}
	return ts, seq, true
}

// isOutputFile reports whether e is one of the output files: a regular
// file named FilePrefix…FileSuffix.
func isOutputFile(e fs.DirEntry) bool {
	name := e.Name()
	return e.Type().IsRegular() && strings.HasPrefix(name, FilePrefix) && strings.HasSuffix(name, FileSuffix)
}

// outputNames returns the output file names in dir, in name order.
func outputNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("ledger: read output directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		if isOutputFile(e) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// SyncDir fsyncs a directory, making its entries (new, renamed or removed
// files) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("ledger: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("ledger: sync directory %s: %w", dir, err)
	}
	return nil
}
