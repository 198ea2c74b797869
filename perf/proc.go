package perf

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// clockTicks is USER_HZ, the unit of the times in /proc/PID/stat: 100 on
// every Linux architecture sluice runs on.
const clockTicks = 100

// ParseCPU returns the CPU time (user + system) of a /proc/PID/stat line.
// The second field (the command name, in parentheses) may hold spaces and
// parentheses itself, so the fields are counted from its last ')'.
func ParseCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("perf: /proc stat: no command name in %q", stat)
	}
	f := strings.Fields(string(stat[i+1:]))
	// After the name: state(3) ... utime(14) stime(15), so indexes 11, 12.
	if len(f) < 13 {
		return 0, fmt.Errorf("perf: /proc stat: %d fields after the name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("perf: /proc stat: bad CPU time %q", s)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// ReadCPU returns the CPU time a process has used so far.
func ReadCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return ParseCPU(b)
}

// selfCPU returns the CPU time this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
