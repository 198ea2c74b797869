package perf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/internal/backoff"
	"github.com/sluice-dev/sluice/ledger"
	"github.com/sluice-dev/sluice/load"
	"github.com/sluice-dev/sluice/queue"
)

// The processes sluice chaos kills, one target per phase.
const (
	TargetDrainer = "drainer" // sluice drain --framing acked
	TargetRun     = "run"     // sluice run --framing acked
	TargetBoth    = "both"    // the drainer and sluice run at the same moment
	TargetNATS    = "nats"    // the NATS JetStream server (sluice chaos-nats)
)

// ChaosTargets are the targets in the order a chaos run takes them.
var ChaosTargets = []string{TargetDrainer, TargetRun, TargetBoth, TargetNATS}

// natsReadyMsg is the log line of ServeNATS once its server accepts clients.
const natsReadyMsg = "chaos nats server ready"

// chaosFile is the run's record in its directory: what each phase's
// producer had acknowledged, for VerifyChaosDir.
const chaosFile = "chaos.json"

// ChaosOptions configures Chaos. The zero value of each field means its
// documented default.
type ChaosOptions struct {
	Exe            string        // the sluice binary re-executed for every child; required
	Dir            string        // where the run's directory is made; "" = os.TempDir()
	Keep           bool          // keep the run's directory when the run passed (a failed run's is always kept)
	Targets        []string      // targets, in order; nil = ChaosTargets
	Rounds         int           // kills per target; 0 = 3
	Seed           uint64        // seeds the kill moments; 0 = drawn from the clock (ChaosResult.Seed says which)
	MinGap, MaxGap time.Duration // each kill comes at a moment uniform in [MinGap, MaxGap] after the last restart; 0 = 200ms, 1.2s
	Rate           float64       // records per second published; 0 = 2000
	PerMessage     int           // records per queue message; 0 = 10
	Settle         time.Duration // per target, how long after producing stops to wait for every acknowledged record; 0 = 60s
	Restart        time.Duration // how long a restarted process may take to be ready; 0 = 30s
	NATSSync       string        // the NATS server's store sync: "always" (fsync before each publish ack) or an interval; "" = "always"
	Log            io.Writer     // the per-round log lines; nil = discarded
}

// ChaosRound is one kill and restart.
type ChaosRound struct {
	Target  string        `json:"target"`
	Round   int           `json:"round"`      // 1-based, within its target
	At      time.Duration `json:"at_ns"`      // the kill's moment, since the target's phase started
	Records int64         `json:"records"`    // records the queue had acknowledged to the producer in this phase, at the kill
	Restart time.Duration `json:"restart_ns"` // from SIGKILL to the restarted process(es) being ready
}

// ChaosPhase is one target's rounds, under one producer run.
type ChaosPhase struct {
	Target  string        `json:"target"`
	Rounds  []ChaosRound  `json:"rounds"`
	Gen     load.Result   `json:"producer"` // what the producer published; only its acknowledged records are expected
	Report  load.Report   `json:"report"`   // the committed output's count of this phase's records, after every process stopped
	Settle  time.Duration `json:"settle_ns"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// OK reports whether the phase lost nothing and duplicated nothing (and
// nothing arrived damaged or unknown).
func (p ChaosPhase) OK() bool { return p.Report.OK(true) }

// ChaosResult is a whole chaos run.
type ChaosResult struct {
	Seed    uint64        `json:"seed"`
	Dir     string        `json:"dir,omitempty"` // the run's directory, when kept
	Phases  []ChaosPhase  `json:"phases"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Lost is the acknowledged records missing from the output, over all phases.
func (r ChaosResult) Lost() (n int64) {
	for _, p := range r.Phases {
		n += p.Report.Lost
	}
	return n
}

// Duplicated is the records the output holds more than once, over all phases.
func (r ChaosResult) Duplicated() (n int64) {
	for _, p := range r.Phases {
		n += p.Report.Duplicates
	}
	return n
}

// OK reports whether every phase passed.
func (r ChaosResult) OK() bool {
	for _, p := range r.Phases {
		if !p.OK() {
			return false
		}
	}
	return len(r.Phases) > 0
}

// WriteSummary writes one line per phase and the totals.
func (r ChaosResult) WriteSummary(w io.Writer) {
	for _, p := range r.Phases {
		g, rep := p.Gen, p.Report
		fmt.Fprintf(w, "%-7s  %d rounds  %d records acked (%d unacked: may appear once)  %d committed  lost %d  duplicated %d  settled in %v  %v\n",
			p.Target, len(p.Rounds), g.Published, g.Failed, rep.Received, rep.Lost, rep.Duplicates,
			p.Settle.Round(time.Millisecond), p.Elapsed.Round(time.Millisecond))
		if len(rep.LostIDs) > 0 {
			fmt.Fprintf(w, "         lost ids: %v\n", rep.LostIDs)
		}
		if len(rep.DuplicateIDs) > 0 {
			fmt.Fprintf(w, "         duplicated ids: %v\n", rep.DuplicateIDs)
		}
		if rep.Malformed+rep.OutOfRange+rep.InvalidLeaked > 0 {
			fmt.Fprintf(w, "         malformed %d  out of range %d  invalid leaked %d\n", rep.Malformed, rep.OutOfRange, rep.InvalidLeaked)
		}
	}
	verdict := "PASS"
	if !r.OK() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "lost %d duplicated %d  (seed %d, %v)  %s\n", r.Lost(), r.Duplicated(), r.Seed, r.Elapsed.Round(time.Millisecond), verdict)
	if r.Dir != "" {
		fmt.Fprintf(w, "files kept in %s\n", r.Dir)
	}
}

func (o ChaosOptions) withDefaults() (ChaosOptions, error) {
	if o.Exe == "" {
		return o, fmt.Errorf("%w: chaos needs the sluice executable", ErrBadOptions)
	}
	if o.Targets == nil {
		o.Targets = ChaosTargets
	}
	if len(o.Targets) == 0 {
		return o, fmt.Errorf("%w: no targets: want some of %v", ErrBadOptions, ChaosTargets)
	}
	for _, t := range o.Targets {
		if !slices.Contains(ChaosTargets, t) {
			return o, fmt.Errorf("%w: target %q: want one of %v", ErrBadOptions, t, ChaosTargets)
		}
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.MinGap == 0 {
		o.MinGap = 200 * time.Millisecond
	}
	if o.MaxGap == 0 {
		o.MaxGap = max(1200*time.Millisecond, o.MinGap)
	}
	if o.Rate == 0 {
		o.Rate = 2000
	}
	if o.PerMessage == 0 {
		o.PerMessage = 10
	}
	if o.Settle == 0 {
		o.Settle = time.Minute
	}
	if o.Restart == 0 {
		o.Restart = 30 * time.Second
	}
	if o.NATSSync == "" {
		o.NATSSync = "always"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	switch {
	case o.Rounds < 1:
		return o, fmt.Errorf("%w: rounds %d < 1", ErrBadOptions, o.Rounds)
	case o.MinGap < 0 || o.MaxGap < o.MinGap:
		return o, fmt.Errorf("%w: kill gap [%v, %v]: want 0 <= min <= max", ErrBadOptions, o.MinGap, o.MaxGap)
	case o.Rate < 0, o.PerMessage < 1:
		return o, fmt.Errorf("%w: rate %v and per-message %d must be positive", ErrBadOptions, o.Rate, o.PerMessage)
	case o.Settle < 0, o.Restart < 0:
		return o, fmt.Errorf("%w: settle %v and restart %v must be positive", ErrBadOptions, o.Settle, o.Restart)
	}
	if o.NATSSync != "always" {
		if d, err := time.ParseDuration(o.NATSSync); err != nil || d <= 0 {
			return o, fmt.Errorf("%w: nats sync %q: want \"always\" or a positive duration", ErrBadOptions, o.NATSSync)
		}
	}
	return o, nil
}

// ServeNATS is the NATS server process of a chaos run (the hidden
// subcommand sluice chaos-nats): sluice's embedded JetStream server on
// listen, its store in dataDir, until ctx is done. sync is "always" or a
// sync interval (see queue.EmbeddedOptions). It logs natsReadyMsg when it
// accepts clients.
func ServeNATS(ctx context.Context, dataDir, listen, sync string, logger *slog.Logger) error {
	eo := queue.EmbeddedOptions{DataDir: dataDir, Listen: listen, SyncAlways: sync == "always", Logger: logger}
	if !eo.SyncAlways {
		d, err := time.ParseDuration(sync)
		if err != nil {
			return fmt.Errorf("%w: --sync %q: want \"always\" or a duration", ErrBadOptions, sync)
		}
		eo.SyncInterval = d
	}
	emb, err := queue.StartEmbedded(eo)
	if err != nil {
		return err
	}
	logger.Info(natsReadyMsg, "url", emb.ClientURL())
	<-ctx.Done()
	emb.Shutdown()
	return nil
}

// chaosProc is one restartable child of a chaos run.
type chaosProc struct {
	name string
	exe  string
	args []string
	env  []string
	log  string
	cur  *child // the running process; owned by the Chaos goroutine
}

func (p *chaosProc) start() error {
	c, err := startChild(p.exe, p.args, p.env, p.log)
	if err != nil {
		return fmt.Errorf("perf: start %s: %w", p.name, err)
	}
	p.cur = c
	return nil
}

// ready waits until the process logged its ready line.
func (p *chaosProc) ready(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.cur.running:
		return nil
	case <-p.cur.done:
		return fmt.Errorf("%w: %s exited at start (%v); see %s", ErrIncomplete, p.name, p.cur.err, p.log)
	case <-t.C:
		return fmt.Errorf("%w: %s not ready within %v; see %s", ErrIncomplete, p.name, timeout, p.log)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// alive fails when the process exited by itself.
func (p *chaosProc) alive() error {
	select {
	case <-p.cur.done:
		return fmt.Errorf("%w: %s exited by itself (%v); see %s", ErrIncomplete, p.name, p.cur.err, p.log)
	default:
		return nil
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *chaosProc) kill() {
	_ = p.cur.cmd.Process.Kill()
	<-p.cur.done
}

// chaosRig is the processes of a chaos run and the producer's connection.
type chaosRig struct {
	o                 ChaosOptions
	dir, out          string
	natsd, run, drain *chaosProc
	nc                *nats.Conn
	js                jetstream.JetStream
}

// Chaos runs sluice under kill -9: a NATS JetStream server (sluice
// chaos-nats, its store on disk), sluice run and sluice drain, both in
// acked framing, all children of o.Exe, and a producer (load.Generate,
// publishing with acks and retrying with the same Nats-Msg-Id). For each
// target it starts a new producer run, then o.Rounds times waits a random
// moment, SIGKILLs the target and restarts it; then it stops the producer
// and waits (at most o.Settle) until the drainer's committed output holds
// every record the queue acknowledged. At the end it stops every process
// gracefully and counts each phase's records in the committed output
// (VerifyOutput): records whose publish was never acknowledged are not
// expected, but count as duplicated if they appear twice.
//
// The error is for a run that could not be carried out (a process that
// did not start or exited by itself, ctx done); lost or duplicated records
// are in the result, not in the error.
func Chaos(ctx context.Context, o ChaosOptions) (res ChaosResult, err error) {
	o, err = o.withDefaults()
	if err != nil {
		return res, err
	}
	res.Seed = o.Seed
	fmt.Fprintf(o.Log, "chaos: seed %d, %d rounds of each target: %s\n", o.Seed, o.Rounds, strings.Join(o.Targets, ", "))
	start := time.Now()
	dir, err := os.MkdirTemp(o.Dir, "chaos-")
	if err != nil {
		return res, err
	}
	defer func() {
		if err != nil || !res.OK() || o.Keep {
			res.Dir = dir
			if err != nil {
				err = fmt.Errorf("%w (files kept in %s)", err, dir)
			}
			return
		}
		_ = os.RemoveAll(dir)
	}()
	r, err := newChaosRig(ctx, o, dir)
	if err != nil {
		return res, err
	}
	defer r.close()

	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	for _, target := range o.Targets {
		ph, err := r.phase(ctx, rng, target)
		res.Phases = append(res.Phases, ph)
		if err != nil {
			return res, err
		}
		if err := saveChaos(dir, res); err != nil {
			return res, err
		}
	}
	// Stop in flow order, gracefully: what is in flight is finished or
	// left for redelivery, and the drainer commits what it acknowledged.
	r.nc.Close()
	var stopErr error
	for _, p := range []*chaosProc{r.run, r.drain, r.natsd} {
		if err := p.cur.stop(); err != nil && stopErr == nil {
			stopErr = fmt.Errorf("perf: %s did not exit cleanly after SIGTERM: %w; see %s", p.name, err, p.log)
		}
	}
	for i := range res.Phases {
		rep, err := VerifyOutput(r.out, res.Phases[i].Gen)
		if err != nil {
			return res, err
		}
		res.Phases[i].Report = rep
	}
	res.Elapsed = time.Since(start)
	if err := saveChaos(dir, res); err != nil {
		return res, err
	}
	return res, stopErr
}

func newChaosRig(ctx context.Context, o ChaosOptions, dir string) (*chaosRig, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, fmt.Errorf("perf: pick a port for the NATS server: %w", err)
	}
	r := &chaosRig{o: o, dir: dir, out: filepath.Join(dir, "out")}
	sock := filepath.Join(dir, "s.sock")
	env := append(os.Environ(), "SLUICE_FAULTS=")
	runEnv := append(env[:len(env):len(env)],
		"SLUICE_QUEUE_ACK_WAIT=2s", // a killed sluice's messages come back soon
		"SLUICE_SINK_BACKOFF_MIN=10ms", "SLUICE_SINK_BACKOFF_MAX=200ms",
		"SLUICE_SINK_ACK_TIMEOUT=3s", "SLUICE_PIPELINE_FETCH_WAIT=50ms", "SLUICE_PIPELINE_WORKERS=2")
	r.natsd = &chaosProc{name: "the NATS server", exe: o.Exe, env: env, log: filepath.Join(dir, "nats.log"),
		args: []string{"chaos-nats", "--data-dir", filepath.Join(dir, "nats"), "--listen", addr, "--sync", o.NATSSync}}
	r.run = &chaosProc{name: "sluice run", exe: o.Exe, env: runEnv, log: filepath.Join(dir, "run.log"),
		args: []string{"run", "--queue-url", "nats://" + addr, "--socket", sock, "--framing", "acked",
			"--admin", "off", "--log-format", "json"}}
	r.drain = &chaosProc{name: "sluice drain", exe: o.Exe, env: env, log: filepath.Join(dir, "drain.log"),
		args: []string{"drain", "--framing", "acked", "--socket", sock, "--out", r.out, "--log-format", "json"}}
	for _, p := range []*chaosProc{r.natsd, r.drain, r.run} {
		if err := p.start(); err != nil {
			r.close()
			return nil, err
		}
		if err := p.ready(ctx, o.Restart); err != nil {
			r.close()
			return nil, err
		}
	}
	r.nc, err = nats.Connect("nats://"+addr, nats.Name("sluice-chaos-producer"),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		r.close()
		return nil, fmt.Errorf("perf: connect the producer to %s: %w", addr, err)
	}
	if r.js, err = jetstream.New(r.nc); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// close kills whatever still runs (after a failure; a passing run has
// stopped them gracefully already).
func (r *chaosRig) close() {
	if r.nc != nil {
		r.nc.Close()
	}
	for _, p := range []*chaosProc{r.run, r.drain, r.natsd} {
		if p != nil && p.cur != nil {
			p.kill()
		}
	}
}

// victims are the processes a target kills, in restart order.
func (r *chaosRig) victims(target string) []*chaosProc {
	switch target {
	case TargetDrainer:
		return []*chaosProc{r.drain}
	case TargetRun:
		return []*chaosProc{r.run}
	case TargetBoth:
		return []*chaosProc{r.drain, r.run}
	default:
		return []*chaosProc{r.natsd}
	}
}

// phase runs one target's rounds under a producer run of its own.
func (r *chaosRig) phase(ctx context.Context, rng *rand.Rand, target string) (ChaosPhase, error) {
	ph := ChaosPhase{Target: target}
	start := time.Now()
	var acked atomic.Int64
	gen := load.GenOptions{
		Subject: "ingest.chaos", Rate: r.o.Rate, PerMessage: r.o.PerMessage, Publishers: 2,
		RecordSize: 120, RunID: fmt.Sprintf("chaos-%s-%d", target, start.UnixNano()),
		Retries: 20, AckTimeout: 2 * time.Second, Acked: &acked,
	}
	genCtx, stopGen := context.WithCancel(ctx)
	defer stopGen()
	type genOut struct {
		res load.Result
		err error
	}
	genDone := make(chan genOut, 1)
	go func() {
		res, err := load.Generate(genCtx, r.js, gen, nil)
		genDone <- genOut{res, err}
	}()
	finish := func() (load.Result, error) {
		stopGen()
		g := <-genDone
		if g.err != nil && !errors.Is(g.err, context.Canceled) {
			return g.res, fmt.Errorf("perf: the chaos producer: %w", g.err)
		}
		return g.res, ctx.Err()
	}
	fail := func(err error) (ChaosPhase, error) {
		ph.Gen, _ = finish()
		ph.Elapsed = time.Since(start)
		return ph, err
	}

	victims := r.victims(target)
	for round := 1; round <= r.o.Rounds; round++ {
		gap := r.o.MinGap + time.Duration(rng.Int64N(int64(r.o.MaxGap-r.o.MinGap)+1))
		if err := backoff.Sleep(ctx, gap); err != nil {
			return fail(err)
		}
		for _, p := range []*chaosProc{r.natsd, r.drain, r.run} {
			if err := p.alive(); err != nil {
				return fail(err)
			}
		}
		rd := ChaosRound{Target: target, Round: round, At: time.Since(start), Records: acked.Load()}
		killed := time.Now()
		for _, p := range victims {
			_ = p.cur.cmd.Process.Kill()
		}
		for _, p := range victims {
			<-p.cur.done
		}
		for _, p := range victims {
			if err := p.start(); err != nil {
				return fail(err)
			}
			if err := p.ready(ctx, r.o.Restart); err != nil {
				return fail(err)
			}
		}
		rd.Restart = time.Since(killed)
		ph.Rounds = append(ph.Rounds, rd)
		fmt.Fprintf(r.o.Log, "%-7s  round %2d/%d  kill at +%6.3fs  records %7d  restart %v\n",
			target, round, r.o.Rounds, rd.At.Seconds(), rd.Records, rd.Restart.Round(time.Millisecond))
	}
	// One more gap of producing after the last restart, so the last
	// round's recovery is under load too.
	if err := backoff.Sleep(ctx, r.o.MinGap+time.Duration(rng.Int64N(int64(r.o.MaxGap-r.o.MinGap)+1))); err != nil {
		return fail(err)
	}
	res, err := finish()
	ph.Gen = res
	if err != nil {
		ph.Elapsed = time.Since(start)
		return ph, err
	}
	if res.Published == 0 {
		ph.Elapsed = time.Since(start)
		return ph, fmt.Errorf("%w: the producer had no publish acknowledged (last error: %s)", ErrIncomplete, res.LastError)
	}

	// Settle: until the committed output holds every acknowledged record.
	settled := time.Now()
	deadline := settled.Add(r.o.Settle)
	for {
		// The drainer writes on while this reads: an error (a file
		// rotated under the read) is retried until the deadline.
		rep, err := VerifyOutput(r.out, res)
		if err == nil {
			ph.Report = rep
		}
		if err == nil && rep.Lost == 0 {
			break
		}
		if !time.Now().Before(deadline) {
			if err != nil {
				ph.Elapsed = time.Since(start)
				return ph, err
			}
			break
		}
		if err := backoff.Sleep(ctx, 200*time.Millisecond); err != nil {
			return ph, err
		}
	}
	ph.Settle = time.Since(settled)
	ph.Elapsed = time.Since(start)
	fmt.Fprintf(r.o.Log, "%-7s  producer stopped: %d records acked, %d unacked; output settled in %v with %d missing\n",
		target, res.Published, res.Failed, ph.Settle.Round(time.Millisecond), ph.Report.Lost)
	return ph, nil
}

// VerifyOutput counts the records of the producer run gen in a drainer's
// committed output directory out, read with ledger.ReadCommitted (only
// what the drainer's journal records as committed; nothing the drainer
// itself counted): every record the queue acknowledged must be there once.
// Records of gen whose publish was not acknowledged (gen.FailedRanges) are
// not expected; one that arrives is counted in FailedArrived, and a second
// copy as a duplicate. Other runs' records are counted in OtherRuns only.
func VerifyOutput(out string, gen load.Result) (load.Report, error) {
	v := load.NewVerifier(gen.RunID, gen.MaxSeq)
	if err := v.Expect(gen); err != nil {
		return load.Report{}, err
	}
	now := time.Now()
	err := ledger.ReadCommitted(out, func(line []byte) error {
		v.Observe(line, now)
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return load.Report{}, fmt.Errorf("perf: read the drainer's committed output in %s: %w", out, err)
	}
	return v.Report(), nil
}

// saveChaos writes res to the run's directory, for VerifyChaosDir.
func saveChaos(dir string, res ChaosResult) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, chaosFile), append(b, '\n'), 0o600)
}

// VerifyChaosDir verifies a kept chaos run's directory again: it reads the
// producers' results from its chaos.json and counts them in its out
// directory (VerifyOutput), as the run did at its end.
func VerifyChaosDir(dir string) (ChaosResult, error) {
	var res ChaosResult
	b, err := os.ReadFile(filepath.Join(dir, chaosFile))
	if err != nil {
		return res, fmt.Errorf("perf: %s is not a chaos run's directory (kept with sluice chaos --keep, or after a failure): %w", dir, err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return res, fmt.Errorf("perf: %s: %w", filepath.Join(dir, chaosFile), err)
	}
	for i := range res.Phases {
		rep, err := VerifyOutput(filepath.Join(dir, "out"), res.Phases[i].Gen)
		if err != nil {
			return res, err
		}
		res.Phases[i].Report = rep
	}
	res.Dir = ""
	return res, nil
}
