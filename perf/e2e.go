package perf

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// E2EOptions configures one end-to-end measurement.
type E2EOptions struct {
	Exe        string        // the sluice binary
	Dir        string        // parent of the run's temporary directory
	Framing    string        // "lines" or "acked", passed to run and drain
	Records    int           // records to move
	PerMessage int           // records per queue message
	RecordSize int           // bytes per record, newline excluded
	Timeout    time.Duration // limit for the whole measurement
	// DrainCPUProfile, when set, runs the drainer as the hidden
	// "sluice bench-drain --cpuprofile FILE" and writes its CPU profile there.
	DrainCPUProfile string
	// CPUProfile, when set, runs the service as the hidden
	// "sluice bench-run --cpuprofile FILE" and writes its CPU profile there.
	CPUProfile string
	// Env is added to sluice run's environment (e.g. SLUICE_FLIGHT_ENABLED=true).
	Env []string
	// Config, when set, is written to a file that sluice run gets as
	// --config (for process steps, which only a file sets). Its steps
	// must keep every record; the output size the drainer must reach is
	// computed by running them (package process) on the records.
	Config string
}

// E2EResult is one end-to-end measurement.
type E2EResult struct {
	Records   int
	Elapsed   time.Duration // drainer start until every record is in its files
	PeakRSS   int64         // sluice's VmHWM at the end, bytes (preload included)
	SteadyRSS int64         // median of sluice's VmRSS sampled while draining, bytes
	SluiceCPU time.Duration // CPU time of sluice run (with its embedded JetStream server) while draining
	DrainCPU  time.Duration // CPU time of the drainer, start to end
}

// CPUPerMillion returns CPU-seconds per million records of d.
func (r E2EResult) CPUPerMillion(d time.Duration) float64 {
	return d.Seconds() / float64(r.Records) * 1e6
}

// RecordsPerSec is the end-to-end record rate.
func (r E2EResult) RecordsPerSec() float64 { return float64(r.Records) / r.Elapsed.Seconds() }

// rssEvery is how often the sluice process's VmRSS is sampled.
const rssEvery = 25 * time.Millisecond

// EndToEnd measures sluice end to end: it starts sluice run as a child (its
// embedded JetStream server on a free 127.0.0.1 port, admin off), preloads
// the stream over TCP with o.Records records, o.PerMessage per message,
// while no drainer is up (sluice fetches up to its in-flight bound and
// waits), then starts sluice drain as a child writing to files and times
// from that start until the files hold every record. The sink's reconnect
// backoff is shortened (10-50ms) so a waiting sluice finds the drainer at
// once. With the framing refused by either child at start, it returns an
// error wrapping ErrNotAvailable.
func EndToEnd(ctx context.Context, o E2EOptions) (res E2EResult, err error) {
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	dir, err := os.MkdirTemp(o.Dir, "e2e-")
	if err != nil {
		return res, err
	}
	defer keepOnError(dir, &err)
	sock := filepath.Join(dir, "s.sock")
	out := filepath.Join(dir, "out")
	// The stream is loaded whole before the drain is timed: no byte limit,
	// so a large --records run is not refused.
	env := append(os.Environ(), "SLUICE_FAULTS=", "SLUICE_SINK_BACKOFF_MIN=10ms", "SLUICE_SINK_BACKOFF_MAX=50ms", "SLUICE_QUEUE_MAX_BYTES=0")

	svcEnv := append(env[:len(env):len(env)], o.Env...)
	args := []string{"run"}
	if o.CPUProfile != "" {
		args = []string{"bench-run", "--cpuprofile", o.CPUProfile}
	}
	args = append(args, "--socket", sock, "--framing", o.Framing, "--data-dir", filepath.Join(dir, "data"),
		"--listen", "127.0.0.1:0", "--admin", "off", "--log-format", "json")
	if o.Config != "" {
		cf := filepath.Join(dir, "sluice.yaml")
		if err := os.WriteFile(cf, []byte(o.Config), 0o600); err != nil {
			return res, err
		}
		args = append(args, "--config", cf)
	}
	svc, err := startChild(o.Exe, args, svcEnv, filepath.Join(dir, "run.log"))
	if err != nil {
		return res, err
	}
	defer svc.stop()
	nc, js, err := publisherFor(ctx, svc, o.Framing, "sluice-bench-publisher")
	if err != nil {
		return res, err
	}
	defer nc.Close()
	p := &payloads{records: o.Records, perMsg: o.PerMessage, size: o.RecordSize}
	want := p.OutputBytes()
	if _, err := publish(ctx, js, p); err != nil {
		return res, err
	}
	nc.Close()

	dargs := []string{"drain"}
	if o.DrainCPUProfile != "" {
		dargs = []string{"bench-drain", "--cpuprofile", o.DrainCPUProfile}
	}
	dargs = append(dargs, "--socket", sock, "--out", out, "--log-format", "json")
	if o.Framing != "lines" {
		dargs = append(dargs, "--framing", o.Framing)
	}
	var rss []float64
	cpu0, err := ReadCPU(svc.cmd.Process.Pid)
	if err != nil {
		return res, fmt.Errorf("perf: sluice run's CPU time: %w", err)
	}
	start := time.Now()
	drainer, err := startChild(o.Exe, dargs, env, filepath.Join(dir, "drain.log"))
	if err != nil {
		return res, err
	}
	defer drainer.stop()
	tick := time.NewTicker(rssEvery)
	defer tick.Stop()
	// Done when the output holds every record: by its size, or, when a
	// config's steps change the records' sizes, by its lines.
	progress, unit := outputSize, "bytes"
	if o.Config != "" {
		lc := &lineCounter{read: map[string]int64{}}
		progress, unit, want = lc.count, "lines", int64(o.Records)
	}
	for {
		size, err := progress(out)
		if err != nil {
			return res, err
		}
		if size >= want {
			res.Elapsed = time.Since(start)
			break
		}
		select {
		case <-drainer.done:
			if time.Since(start) < 5*time.Second && size == 0 {
				return res, drainer.startFailure("sluice drain", o.Framing)
			}
			return res, fmt.Errorf("%w: sluice drain exited with %d of %d %s written; see %s", ErrIncomplete, size, want, unit, drainer.log)
		case <-svc.done:
			return res, fmt.Errorf("%w: sluice run exited with %d of %d %s drained; see %s", ErrIncomplete, size, want, unit, svc.log)
		case <-ctx.Done():
			return res, fmt.Errorf("%w: %d of %d %s drained: %v", ErrIncomplete, size, want, unit, ctx.Err())
		case <-tick.C:
			if st, err := ReadStatus(svc.cmd.Process.Pid); err == nil {
				rss = append(rss, float64(st.VmRSS))
			}
		}
	}
	cpu1, err := ReadCPU(svc.cmd.Process.Pid)
	if err == nil {
		res.SluiceCPU = cpu1 - cpu0
		res.DrainCPU, err = ReadCPU(drainer.cmd.Process.Pid)
	}
	if err != nil {
		return res, fmt.Errorf("perf: CPU time: %w", err)
	}
	st, err := ReadStatus(svc.cmd.Process.Pid)
	if err != nil {
		return res, fmt.Errorf("perf: sluice run's memory: %w", err)
	}
	rss = append(rss, float64(st.VmRSS))
	res.Records = o.Records
	res.PeakRSS = st.VmHWM
	res.SteadyRSS = int64(Summarize(rss).Median)

	if err := svc.stop(); err != nil {
		return res, fmt.Errorf("perf: sluice run did not exit cleanly: %w; see %s", err, svc.log)
	}
	if err := drainer.stop(); err != nil {
		return res, fmt.Errorf("perf: sluice drain did not exit cleanly: %w; see %s", err, drainer.log)
	}
	lines, err := countLines(out)
	if err != nil {
		return res, err
	}
	if lines != int64(o.Records) {
		return res, fmt.Errorf("%w: the drainer wrote %d lines; want %d", ErrIncomplete, lines, o.Records)
	}
	return res, nil
}

// outputSize is the total size of the drainer's *.jsonl files in dir.
func outputSize(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".jsonl") {
			continue
		}
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n, nil
}

// lineCounter counts the newlines in the drainer's *.jsonl files as they
// grow, reading each byte once.
type lineCounter struct {
	read  map[string]int64 // bytes of each file counted so far
	lines int64
	buf   []byte
}

func (lc *lineCounter) count(dir string) (int64, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return 0, err
	}
	if lc.buf == nil {
		lc.buf = make([]byte, 1<<20)
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return 0, err
		}
		for {
			n, err := f.ReadAt(lc.buf, lc.read[name])
			lc.lines += int64(bytes.Count(lc.buf[:n], []byte{'\n'}))
			lc.read[name] += int64(n)
			if err != nil || n == 0 {
				break
			}
		}
		_ = f.Close()
	}
	return lc.lines, nil
}

// countLines counts the newlines in the drainer's *.jsonl files in dir.
func countLines(dir string) (int64, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return 0, err
	}
	var n int64
	buf := make([]byte, 1<<20)
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return 0, err
		}
		for {
			k, err := f.Read(buf)
			n += int64(bytes.Count(buf[:k], []byte{'\n'}))
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				return 0, err
			}
		}
		f.Close()
	}
	return n, nil
}

// keepOnError removes a run's directory, or, when *err is set, keeps it
// and says where in the error.
func keepOnError(dir string, err *error) {
	if *err == nil || errors.Is(*err, ErrNotAvailable) {
		_ = os.RemoveAll(dir)
	} else {
		*err = fmt.Errorf("%w (files kept in %s)", *err, dir)
	}
}

// publisherFor waits until the sluice run child svc is running and
// connects a publisher (named name) to its embedded server.
func publisherFor(ctx context.Context, svc *child, framing, name string) (*nats.Conn, jetstream.JetStream, error) {
	var url string
	select {
	case url = <-svc.url:
	case <-svc.done:
		return nil, nil, svc.startFailure("sluice run", framing)
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("perf: sluice run not ready: %w", ctx.Err())
	}
	select {
	case <-svc.running:
	case <-svc.done:
		return nil, nil, svc.startFailure("sluice run", framing)
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("perf: sluice run not ready: %w", ctx.Err())
	}
	nc, err := nats.Connect(url, nats.Name(name), nats.Token(childToken))
	if err != nil {
		return nil, nil, fmt.Errorf("perf: connect publisher to %s: %w", url, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(pubPending))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// childToken is the token the embedded servers of the sluice run children
// ask for, made afresh for each bench process.
var childToken = func() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// child is a sluice child process whose stderr (JSON logs) goes to a file
// and is watched for the service's start lines.
type child struct {
	cmd     *exec.Cmd
	log     string
	url     chan string   // the embedded server's client URL, once
	running chan struct{} // closed on "sluice running", "drainer listening" or natsReadyMsg
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result; read after done

	stopOnce sync.Once
	stopErr  error
}

func startChild(exe string, args, env []string, logPath string) (*child, error) {
	// Appended to, so a restarted child (sluice chaos) keeps one log.
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	// A sluice run child's embedded server asks for this token
	// (queue.auth token, the default); its publishers present it.
	cmd.Env = append(env, "SLUICE_QUEUE_TOKEN="+childToken)
	cmd.Stdout = logf
	pr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("perf: start %s %s: %w", exe, args[0], err)
	}
	c := &child{cmd: cmd, log: logPath, url: make(chan string, 1), running: make(chan struct{}), done: make(chan struct{})}
	go func() {
		var once sync.Once
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = logf.Write(append(line, '\n'))
			var rec struct {
				Msg string `json:"msg"`
				URL string `json:"url"`
			}
			if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &rec) != nil {
				continue
			}
			switch rec.Msg {
			case "embedded queue started":
				select {
				case c.url <- rec.URL:
				default:
				}
			case "sluice running", "drainer listening", natsReadyMsg:
				once.Do(func() { close(c.running) })
			}
		}
		_, _ = io.Copy(logf, pr)
		c.err = cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	return c, nil
}

// stop sends SIGTERM and waits up to 20s, then kills. It returns the
// process's exit error (nil for status 0); it is idempotent.
func (c *child) stop() error {
	c.stopOnce.Do(func() {
		select {
		case <-c.done:
		default:
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.done:
			case <-time.After(20 * time.Second):
				_ = c.cmd.Process.Kill()
				<-c.done
				c.stopErr = errors.New("did not stop within 20s of SIGTERM; killed")
				return
			}
		}
		c.stopErr = c.err
	})
	return c.stopErr
}

// startFailure explains a child that exited at start. When its log
// mentions the framing, the framing is taken as not available.
func (c *child) startFailure(what, framing string) error {
	b, _ := os.ReadFile(c.log)
	// The CLI's own error is its last line, "sluice: ..."; else the last log line.
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	tail := lines[len(lines)-1]
	if len(tail) > 300 {
		tail = tail[:300] + "..."
	}
	if framing != "lines" && (strings.Contains(tail, "framing") || strings.Contains(tail, framing)) {
		return fmt.Errorf("%w: %s --framing %s exited at start: %s", ErrNotAvailable, what, framing, tail)
	}
	return fmt.Errorf("%w: %s exited at start (%v): %s", ErrIncomplete, what, c.err, tail)
}
