package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/conformance"
	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/wire"
)

// runConformance runs the suite against the drainer that command starts
// (this test binary re-executed), with socket and output in dir.
func runConformance(t *testing.T, sock, out, command string) []conformance.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log testkit.SyncBuffer
	rs, err := conformance.Run(ctx, conformance.Options{Socket: sock, Out: out, Exec: command, Timeout: 10 * time.Second, Log: &log})
	if err != nil {
		t.Fatalf("conformance run: %v\n%s", err, log.String())
	}
	t.Logf("\n%s", conformance.Table(rs))
	return rs
}

func status(rs []conformance.Result, name string) conformance.Result {
	for _, r := range rs {
		if r.Name == name {
			return r
		}
	}
	return conformance.Result{Name: name, Status: "MISSING"}
}

// sluiceCommand is a shell command running this test binary as sluice.
func sluiceCommand(args string) string {
	return fmt.Sprintf("SLUICE_TEST_MAIN=1 exec %q %s", os.Args[0], args)
}

// The reference drainer passes every check, crash recovery included, with
// and without the identity prefix on its lines.
func TestConformance_ReferenceDrainer(t *testing.T) {
	for _, identity := range []bool{false, true} {
		t.Run(fmt.Sprintf("identity=%v", identity), func(t *testing.T) {
			dir := testkit.ShortDir(t)
			sock, out := filepath.Join(dir, "d.sock"), filepath.Join(dir, "out")
			rs := runConformance(t, sock, out, sluiceCommand(fmt.Sprintf("drain --framing acked --socket %q --out %q --write-identity=%v", sock, out, identity)))
			for _, r := range rs {
				if r.Status != conformance.Pass {
					t.Errorf("%s: %s %s", r.Name, r.Status, r.Detail)
				}
			}
		})
	}
}

// A drainer that keeps its dedup state in memory only (sluice drain to
// stdout, here redirected to a file) writes redelivered records again after
// a restart: the crash checks catch it.
func TestConformance_ForgetfulDrainerFails(t *testing.T) {
	dir := testkit.ShortDir(t)
	sock, out := filepath.Join(dir, "d.sock"), filepath.Join(dir, "out.jsonl")
	rs := runConformance(t, sock, out, sluiceCommand(fmt.Sprintf("drain --framing acked --socket %q --out - >> %q", sock, out)))
	if !conformance.Failed(rs) {
		t.Fatal("the suite passed a drainer that forgets its dedup state on restart")
	}
	for _, name := range []string{"crash/kill-after-ack", "crash/kill-mid-frame", "crash/kill-before-ack"} {
		if r := status(rs, name); r.Status != conformance.Fail || !strings.Contains(r.Detail, "more than once") {
			t.Errorf("%s: %s %q, want a failure naming duplicates", name, r.Status, r.Detail)
		}
	}
	if r := status(rs, "dedup/resend-after-reconnect"); r.Status != conformance.Pass {
		t.Errorf("dedup/resend-after-reconnect: %s %s; within one run it dedups", r.Status, r.Detail)
	}
}

// A drainer that acknowledges a frame before its records are durable loses
// acknowledged records when it is killed: the crash checks catch it, and
// the command exits 1.
func TestConformance_AckBeforeWriteFails(t *testing.T) {
	dir := testkit.ShortDir(t)
	sock, out := filepath.Join(dir, "d.sock"), filepath.Join(dir, "out.jsonl")
	command := fmt.Sprintf("SLUICE_TEST_ACK_FIRST_DRAINER=1 exec %q %q %q", os.Args[0], sock, out)
	rs := runConformance(t, sock, out, command)
	if r := status(rs, "crash/kill-after-ack"); r.Status != conformance.Fail || !strings.Contains(r.Detail, "missing") {
		t.Errorf("crash/kill-after-ack: %s %q, want a failure naming lost records", r.Status, r.Detail)
	}
	if r := status(rs, "handshake/version-2"); r.Status != conformance.Pass {
		t.Errorf("handshake/version-2: %s %s", r.Status, r.Detail)
	}
	if code := Main([]string{"conformance", "--socket", sock, "--out", out, "--exec", command, "--rounds", "1"}); code != exitError {
		t.Errorf("sluice conformance exited %d against a broken drainer, want %d", code, exitError)
	}
}

// ackFirstDrainer is a broken acked drainer: it acknowledges each DATA
// frame as soon as it has read it and writes the records through a buffer
// flushed every two seconds, so a SIGKILL loses what it acknowledged.
func ackFirstDrainer(sock, out string) int {
	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	w := bufio.NewWriterSize(f, 1<<20)
	go func() {
		for range time.Tick(2 * time.Second) {
			mu.Lock()
			w.Flush()
			mu.Unlock()
		}
	}()
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		nc, err := ln.Accept()
		if err != nil {
			return 1
		}
		go func() {
			defer nc.Close()
			var st wire.ServerState
			rd := wire.NewReader(nc)
			fr, err := rd.ReadFrame()
			if err != nil {
				return
			}
			wel, err := st.Hello(fr, wire.Welcome{Server: "ack-first"})
			if err != nil {
				nc.Write(wire.AppendClose(nil, wire.CloseFor(err)))
				return
			}
			b, _ := wire.AppendWelcome(nil, wel)
			nc.Write(b)
			rd.Limits = wel.Limits()
			for {
				fr, err := rd.ReadFrame()
				if err == nil {
					err = st.Receive(fr)
				}
				if err != nil {
					nc.Write(wire.AppendClose(nil, wire.CloseFor(err)))
					return
				}
				nc.Write(wire.AppendAck(nil, wire.Ack{UpTo: fr.Data.FrameID}))
				mu.Lock()
				for _, r := range fr.Data.Records {
					w.Write(r.Data)
					w.WriteByte('\n')
				}
				mu.Unlock()
			}
		}()
	}
}

// The example drainer written with package drain's Store
// (examples/go-drainer) passes every check, crash recovery included.
func TestConformance_GoExampleDrainer(t *testing.T) {
	dir := testkit.ShortDir(t)
	bin := filepath.Join(dir, "go-drainer")
	build := exec.Command("go", "build", "-o", bin, "../../examples/go-drainer")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build examples/go-drainer: %v\n%s", err, out)
	}
	sock, out := filepath.Join(dir, "d.sock"), filepath.Join(dir, "out.jsonl")
	rs := runConformance(t, sock, out, fmt.Sprintf("exec %q %q %q", bin, sock, out))
	for _, r := range rs {
		if r.Status != conformance.Pass {
			t.Errorf("%s: %s %s", r.Name, r.Status, r.Detail)
		}
	}
}

// The example drainers of the Python and Node libraries (clients/) pass
// every check, crash recovery included.
func TestConformance_ClientLibraries(t *testing.T) {
	for _, tc := range []struct{ name, interp, script string }{
		{"python", "python3", "../../clients/python/example_drainer.py"},
		{"node", "node", "../../clients/node/example-drainer.mjs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			interp, err := exec.LookPath(tc.interp)
			if err != nil {
				t.Fatalf("%s is needed to test the %s library: %v (scripts/test installs it: apt-get install python3 nodejs)", tc.interp, tc.name, err)
			}
			script, err := filepath.Abs(tc.script)
			if err != nil {
				t.Fatal(err)
			}
			dir := testkit.ShortDir(t)
			sock, out := filepath.Join(dir, "d.sock"), filepath.Join(dir, "out.jsonl")
			rs := runConformance(t, sock, out, fmt.Sprintf("exec %q %q %q %q", interp, script, sock, out))
			for _, r := range rs {
				if r.Status != conformance.Pass {
					t.Errorf("%s: %s %s", r.Name, r.Status, r.Detail)
				}
			}
		})
	}
}
