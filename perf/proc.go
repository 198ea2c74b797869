package perf

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Status holds the memory fields of /proc/PID/status, in bytes.
type Status struct {
	VmRSS int64 // resident set size now
	VmHWM int64 // peak resident set size ("high water mark")
}

// ParseStatus reads the VmRSS and VmHWM lines of a /proc/PID/status file
// ("VmRSS:	   12345 kB"). Both must be present.
func ParseStatus(r io.Reader) (Status, error) {
	var st Status
	var haveRSS, haveHWM bool
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return Status{}, fmt.Errorf("perf: /proc status: %s: want \"<n> kB\", got %q", name, strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return Status{}, fmt.Errorf("perf: /proc status: %s: bad number %q", name, f[0])
		}
		if name == "VmRSS" {
			st.VmRSS, haveRSS = kb<<10, true
		} else {
			st.VmHWM, haveHWM = kb<<10, true
		}
	}
	if err := sc.Err(); err != nil {
		return Status{}, fmt.Errorf("perf: /proc status: %w", err)
	}
	if !haveRSS || !haveHWM {
		return Status{}, fmt.Errorf("perf: /proc status: VmRSS or VmHWM missing (a zombie or kernel thread?)")
	}
	return st, nil
}

// ReadStatus reads /proc/PID/status.
func ReadStatus(pid int) (Status, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Status{}, err
	}
	return ParseStatus(bytes.NewReader(b))
}
