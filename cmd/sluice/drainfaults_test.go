package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/obs"
)

// sluice drain takes fault points like sluice run: from --faults (with a
// comma inside the action), and at run time from its admin API.
func TestDrain_Faults(t *testing.T) {
	dir := testkit.ShortDir(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := newProc(t, dir, "drain", nil, "drain", "--framing", "acked", "--socket", filepath.Join(dir, "d.sock"), "--out", filepath.Join(dir, "out"),
		"--metrics", addr, "--faults", "drain.ack.before=delay(1ms,10ms)")
	p.start()
	t.Cleanup(p.kill)
	get := func(name string) (obs.FaultState, error) {
		var st obs.FaultState
		resp, err := http.Get("http://" + addr + "/faults/" + name)
		if err != nil {
			return st, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return st, fmt.Errorf("GET /faults/%s: %s", name, resp.Status)
		}
		return st, json.NewDecoder(resp.Body).Decode(&st)
	}
	var st obs.FaultState
	testkit.WaitFor(t, 20*time.Second, func() error {
		var err error
		st, err = get("drain.ack.before")
		return err
	})
	if st.Action != "delay(1ms,10ms)" {
		t.Fatalf("drain.ack.before is %q, want the --faults action delay(1ms,10ms)", st.Action)
	}
	p.stop()
}
