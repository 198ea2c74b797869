package perf

import (
	"bufio"
	"io"
	"os"
	"runtime"
	"strings"
)

// Machine describes where a bench ran.
type Machine struct {
	NProc     int    `json:"nproc"`      // CPUs this process may use
	CPUModel  string `json:"cpu_model"`  // "model name" from /proc/cpuinfo
	GoVersion string `json:"go_version"` // the Go that built the bench
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	Host      string `json:"host"`
}

// ThisMachine describes the machine the process runs on.
func ThisMachine() Machine {
	m := Machine{NProc: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		m.CPUModel = CPUModel(f)
		f.Close()
	}
	m.Host, _ = os.Hostname()
	return m
}

// CPUModel returns the first "model name" in a /proc/cpuinfo, or "" when
// there is none (some architectures name it otherwise).
func CPUModel(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
