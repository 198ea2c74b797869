package perf_test

import (
	"os"
	"strings"
	"testing"

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
