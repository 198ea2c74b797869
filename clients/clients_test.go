package clients_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"
)

// The languages' own test suites: every test vector, sessions on a real
// socket, the dedup state, the example drainer killed and restarted.

func TestPython_Unittest(t *testing.T) {
	python := needTool(t, "python3")
	runSuite(t, "python", python, "-m", "unittest", "-v")
}

func TestNode_Test(t *testing.T) {
	node := needTool(t, "node")
	runSuite(t, "node", node, "--test")
}

// The example drainers end to end against a real sluice.

func TestPython_EndToEnd(t *testing.T) {
	python := needTool(t, "python3")
	runEndToEnd(t, []string{python, filepath.Join(clientsDir(t), "python", "example_drainer.py")})
}

func TestNode_EndToEnd(t *testing.T) {
	node := needTool(t, "node")
	runEndToEnd(t, []string{node, filepath.Join(clientsDir(t), "node", "example-drainer.mjs")})
}

// tools says how to get each language's runtime, and its oldest version.
var tools = map[string]struct {
	version, check, install string
}{
	"python3": {"3.9", "import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)",
		"install Python 3.9 or later (Debian/Ubuntu: apt-get install python3; macOS: brew install python)"},
	"node": {"18", "process.exit(Number(process.versions.node.split('.')[0]) >= 18 ? 0 : 1)",
		"install Node.js 18 or later (Debian/Ubuntu: apt-get install nodejs, or https://nodejs.org; macOS: brew install node)"},
}

// needTool returns the path of name, failing (never skipping) when it is
// missing or too old: the libraries are part of what the tests prove.
func needTool(t *testing.T, name string) string {
	t.Helper()
	tool := tools[name]
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found on PATH: the drainer library tests in clients/ need it; %s, then run the tests again", name, tool.install)
	}
	flag := "-c"
	if name == "node" {
		flag = "-e"
	}
	if out, err := exec.Command(path, flag, tool.check).CombinedOutput(); err != nil {
		v, _ := exec.Command(path, "--version").CombinedOutput()
		t.Fatalf("%s is %s, the drainer library tests in clients/ need %s or later; %s (%v %s)",
			path, strings.TrimSpace(string(v)), tool.version, tool.install, err, out)
	}
	return path
}

func clientsDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// runSuite runs a language's test runner in clients/<dir> and fails with
// its output unless it passes.
func runSuite(t *testing.T, dir, bin string, args ...string) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = filepath.Join(clientsDir(t), dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s in clients/%s failed: %v\n%s", filepath.Base(bin), strings.Join(args, " "), dir, err, out)
	}
	t.Logf("%s %s in clients/%s passed:\n%s", filepath.Base(bin), strings.Join(args, " "), dir, tail(string(out), 12))
}

var sluiceBin struct {
	once sync.Once
	path string
	err  error
}

// TestMain removes the sluice binary built for the end-to-end tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if sluiceBin.path != "" {
		os.RemoveAll(filepath.Dir(sluiceBin.path))
	}
	os.Exit(code)
}

// buildSluice builds cmd/sluice once per test binary.
func buildSluice(t *testing.T) string {
	t.Helper()
	sluiceBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-clients-bin")
		if err != nil {
			sluiceBin.err = err
			return
		}
		sluiceBin.path = filepath.Join(dir, "sluice")
		cmd := exec.Command("go", "build", "-o", sluiceBin.path, "github.com/sluice-dev/sluice/cmd/sluice")
		if out, err := cmd.CombinedOutput(); err != nil {
			sluiceBin.err = fmt.Errorf("go build ./cmd/sluice: %v\n%s", err, out)
		}
	})
	if sluiceBin.err != nil {
		t.Fatal(sluiceBin.err)
	}
	return sluiceBin.path
}

// proc is a child process with its output in a log file.
type proc struct {
	t    *testing.T
	name string
	argv []string
	env  []string
	log  string

	cmd  *exec.Cmd
	done chan struct{}
}

func (p *proc) start() {
	p.t.Helper()
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
}

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and fails the test unless the process exits with
// status 0 within 30s (then it is killed).
func (p *proc) stop() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Errorf("%s did not exit within 30s of SIGTERM; killing it (log %s:\n%s)", p.name, p.log, readTail(p.log))
		p.kill()
		return
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Errorf("%s exited with status %d after SIGTERM, want 0 (log %s:\n%s)", p.name, code, p.log, readTail(p.log))
	}
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	return tail(string(b), 20)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// poll calls cond every 50ms until it returns nil, failing with its last
// error after timeout (a stall guard, not a timed assertion).
func poll(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: still not after %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// outputCounts reads the drainer's output file: how many times each seq of
// run appears, the number of lines, and the lines that are not records of
// run (junk: a torn line, another run).
func outputCounts(path, run string) (counts map[int64]int, lines int, junk []string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, nil, err
	}
	defer f.Close()
	counts = map[int64]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines++
		var r struct {
			Run string `json:"run"`
			Seq int64  `json:"seq"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.Run != run {
			junk = append(junk, sc.Text())
			continue
		}
		counts[r.Seq]++
	}
	return counts, lines, junk, sc.Err()
}

const (
	e2eRecords    = 24000 // records published by sluice load
	e2eRate       = 4000  // records per second: about 6s of publishing
	e2ePerMessage = 3     // records per queue message: a message's records travel together
	e2eKills      = 3     // SIGKILLs of the drainer while records flow
	e2eAckWait    = 2 * time.Second
	e2eDown       = e2eAckWait + time.Second // how long the drainer stays down after the second kill
)

// runEndToEnd runs the example drainer drainer (argv without its SOCKET and
// OUT arguments) against `sluice run --framing acked` with an embedded
// JetStream, publishes e2eRecords records with `sluice load`, kills the
// drainer with SIGKILL e2eKills times while they flow (restarting it each
// time), and checks that its output holds every record exactly once.
func runEndToEnd(t *testing.T, drainer []string) {
	bin := buildSluice(t)
	dir := testkit.ShortDir(t)
	sock, out := filepath.Join(dir, "s.sock"), filepath.Join(dir, "out.jsonl")
	url := fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))

	drain := &proc{t: t, name: "example drainer", argv: append(drainer, sock, out), log: filepath.Join(dir, "drainer.log")}
	run := &proc{t: t, name: "sluice run", argv: []string{bin, "run", "--framing", "acked"}, log: filepath.Join(dir, "run.log"), env: []string{
		"SLUICE_QUEUE_DATA_DIR=" + filepath.Join(dir, "nats"),
		"SLUICE_QUEUE_LISTEN=" + strings.TrimPrefix(url, "nats://"),
		"SLUICE_QUEUE_ACK_WAIT=" + e2eAckWait.String(), // redeliveries while the drainer is down: duplicates to drop
		"SLUICE_SINK_SOCKET=" + sock,
		"SLUICE_SINK_BACKOFF_MIN=10ms",
		"SLUICE_SINK_BACKOFF_MAX=200ms",
		"SLUICE_SINK_ACK_TIMEOUT=3s",
		"SLUICE_ADMIN_LISTEN=off",
		"SLUICE_PIPELINE_WORKERS=2",
		"SLUICE_PIPELINE_FETCH_WAIT=50ms",
	}}
	t.Cleanup(func() { run.kill(); drain.kill() })
	loadLog := filepath.Join(dir, "load.log")
	logs := func() string {
		return fmt.Sprintf("\n--- %s:\n%s\n--- %s:\n%s\n--- %s:\n%s", drain.log, readTail(drain.log), run.log, readTail(run.log), loadLog, readTail(loadLog))
	}

	drain.start()
	poll(t, 30*time.Second, "the example drainer's socket", func() error {
		_, err := os.Stat(sock)
		return err
	})
	run.start()
	poll(t, 30*time.Second, "sluice run's embedded queue", func() error {
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "nats://"))
		if err == nil {
			c.Close()
		}
		return err
	})

	const runID = "clients-e2e"
	type loadResult struct {
		out []byte
		err error
	}
	loaded := make(chan loadResult, 1)
	go func() {
		// sluice run creates the stream at start; until then load fails
		// with "no stream" before publishing anything, and is retried.
		deadline := time.Now().Add(60 * time.Second)
		for {
			cmd := exec.Command(bin, "load", "--url", url, "--run-id", runID, "--count", strconv.Itoa(e2eRecords),
				"--rate", strconv.Itoa(e2eRate), "--per-message", strconv.Itoa(e2ePerMessage), "--publishers", "2",
				"--json", "--metrics-url", "")
			// The token of sluice run's embedded server is in its data directory.
			cmd.Env = append(os.Environ(), "SLUICE_QUEUE_DATA_DIR="+filepath.Join(dir, "nats"))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			b, err := cmd.Output()
			os.WriteFile(loadLog, append(b, stderr.Bytes()...), 0o600)
			if err != nil && strings.Contains(stderr.String(), "no stream") && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if err != nil {
				err = fmt.Errorf("%v: %s", err, stderr.String())
			}
			loaded <- loadResult{b, err}
			return
		}
	}()

	for k := 1; k <= e2eKills; k++ {
		at := k * e2eRecords / (e2eKills + 2)
		poll(t, 60*time.Second, fmt.Sprintf("%d lines of output before kill %d", at, k), func() error {
			select {
			case res := <-loaded:
				if res.err != nil {
					t.Fatalf("sluice load: %v%s", res.err, logs())
				}
				loaded <- res
			default:
			}
			_, lines, _, err := outputCounts(out, runID)
			if err == nil && lines < at {
				err = fmt.Errorf("%d lines%s", lines, logs())
			}
			return err
		})
		drain.kill()
		if k == 2 {
			// Down for longer than the queue's ack wait: the queue redelivers
			// messages that sluice already sent, and they come again in new
			// frames, which the drainer must drop as duplicates.
			time.Sleep(e2eDown)
		}
		drain.start()
	}

	var res loadResult
	select {
	case res = <-loaded:
	case <-time.After(90 * time.Second):
		t.Fatalf("sluice load did not finish within 90s%s", logs())
	}
	if res.err != nil {
		t.Fatalf("sluice load: %v%s", res.err, logs())
	}
	var lr struct {
		Generator struct {
			MaxSeq int64 `json:"max_seq"`
			Failed int64 `json:"failed"`
		} `json:"generator"`
	}
	if err := json.Unmarshal(res.out, &lr); err != nil {
		t.Fatalf("sluice load --json: %v in %q", err, res.out)
	}
	if g := lr.Generator; g.MaxSeq != e2eRecords || g.Failed != 0 {
		t.Fatalf("sluice load published %d records with %d not acknowledged by the queue, want %d and 0: the test cannot tell what must arrive%s",
			g.MaxSeq, g.Failed, e2eRecords, logs())
	}

	poll(t, 90*time.Second, "every record in the drainer's output", func() error {
		counts, _, _, err := outputCounts(out, runID)
		if err == nil && len(counts) < e2eRecords {
			err = fmt.Errorf("%d of %d records%s", len(counts), e2eRecords, logs())
		}
		return err
	})
	run.stop()
	drain.stop()

	counts, lines, junk, err := outputCounts(out, runID)
	if err != nil {
		t.Fatal(err)
	}
	var lost, dups []string
	for seq := int64(1); seq <= e2eRecords; seq++ {
		switch c := counts[seq]; {
		case c == 0:
			lost = append(lost, strconv.FormatInt(seq, 10))
		case c > 1:
			dups = append(dups, fmt.Sprintf("%d×%d", seq, c))
		}
	}
	if len(lost) > 0 || len(dups) > 0 || len(junk) > 0 {
		t.Fatalf("output %s is not exactly once after %d SIGKILLs of the drainer: %d lost %v, %d duplicated %v, %d junk lines %q%s",
			out, e2eKills, len(lost), head(lost), len(dups), head(dups), len(junk), head(junk), logs())
	}
	t.Logf("%d records in %d lines, each exactly once, after %d SIGKILLs of the drainer", e2eRecords, lines, e2eKills)
}

func head(s []string) []string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

// TestREADME_Examples checks that each README's example drainer is the
// shipped, tested example file (less its header comment).
func TestREADME_Examples(t *testing.T) {
	for _, c := range []struct{ dir, lang, file string }{
		{"python", "python", "example_drainer.py"},
		{"node", "js", "example-drainer.mjs"},
	} {
		readme, err := os.ReadFile(filepath.Join(c.dir, "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		example, err := os.ReadFile(filepath.Join(c.dir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		_, block, ok := strings.Cut(string(readme), "```"+c.lang+"\n")
		block, _, ok2 := strings.Cut(block, "```")
		if !ok || !ok2 || !strings.HasSuffix(string(example), block) || len(block) < len(example)/2 {
			t.Errorf("clients/%s/README.md: its first ```%s block is not the end of %s; copy the example file into it\n--- block:\n%s", c.dir, c.lang, c.file, block)
		}
	}
}
