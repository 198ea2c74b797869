package perf_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/perf"
)

const statusSample = `Name:	sluice
Umask:	0022
State:	S (sleeping)
Pid:	4242
VmPeak:	 1298764 kB
VmSize:	 1298764 kB
VmLck:	       0 kB
VmHWM:	   61234 kB
VmRSS:	   40960 kB
RssAnon:	   30000 kB
Threads:	12
`

func TestParseStatus(t *testing.T) {
	st, err := perf.ParseStatus(strings.NewReader(statusSample))
	if err != nil {
		t.Fatal(err)
	}
	if st.VmHWM != 61234*1024 || st.VmRSS != 40960*1024 {
		t.Fatalf("got %+v; want VmHWM %d VmRSS %d", st, 61234*1024, 40960*1024)
	}
	for name, in := range map[string]string{
		"missing VmHWM": "VmRSS:	10 kB\n",
		"missing both":  "Name:	x\nState:	Z (zombie)\n",
		"bad number":    "VmHWM:	x kB\nVmRSS:	1 kB\n",
		"negative":      "VmHWM:	-5 kB\nVmRSS:	1 kB\n",
		"wrong unit":    "VmHWM:	5 MB\nVmRSS:	1 kB\n",
	} {
		t.Run(name, func(t *testing.T) {
			if st, err := perf.ParseStatus(strings.NewReader(in)); err == nil {
				t.Fatalf("ParseStatus(%q) = %+v, nil; want an error", in, st)
			}
		})
	}
}

func TestReadStatus_Self(t *testing.T) {
	st, err := perf.ReadStatus(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if st.VmRSS <= 0 || st.VmHWM < st.VmRSS {
		t.Fatalf("own status %+v: want 0 < VmRSS <= VmHWM", st)
	}
}

func TestCPUModel(t *testing.T) {
	in := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14 96-Core Processor\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: other\n"
	if got, want := perf.CPUModel(strings.NewReader(in)), "AMD EPYC 9R14 96-Core Processor"; got != want {
		t.Fatalf("CPUModel = %q; want %q", got, want)
	}
	if got := perf.CPUModel(strings.NewReader("processor\t: 0\nHardware\t: BCM2835\n")); got != "" {
		t.Fatalf("CPUModel without a model name = %q; want empty", got)
	}
}

func TestParseCPU(t *testing.T) {
	// A command name with a space and a parenthesis, utime 250 and stime
	// 50 ticks: 3 s.
	line := "4242 (sluice (x) run) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 12 0 100 1000 200\n"
	got, err := perf.ParseCPU([]byte(line))
	if err != nil || got != 3*time.Second {
		t.Fatalf("ParseCPU = %v, %v; want 3s", got, err)
	}
	for _, bad := range []string{"4242 sluice S 1", "4242 (sluice) S 1 2 3", "4242 (sluice) S 1 4242 4242 0 -1 4194560 1000 0 0 0 x 50 0"} {
		if _, err := perf.ParseCPU([]byte(bad)); err == nil {
			t.Errorf("ParseCPU(%q) accepted it", bad)
		}
	}
	// Spin until this process has used at least one tick (10 ms).
	deadline := time.Now().Add(5 * time.Second)
	for {
		self, err := perf.ReadCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if self > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ReadCPU(self) stayed 0 after 5 s of spinning")
		}
		for i := 0; i < 1e6; i++ {
			_ = strings.Repeat("x", i%3)
		}
	}
}
