package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/internal/testkit"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// jsCluster is a 3-node JetStream cluster in the test process, on
// loopback, whose nodes can be stopped and started again with their data.
type jsCluster struct {
	t    *testing.T
	opts []*server.Options
	mu   sync.Mutex
	srvs []*server.Server // nil while a node is down
}

func startJSCluster(t *testing.T, dir string) *jsCluster {
	t.Helper()
	const n = 3
	c := &jsCluster{t: t, srvs: make([]*server.Server, n)}
	client, route := make([]int, n), make([]int, n)
	for i := range n {
		client[i], route[i] = freePort(t), freePort(t)
	}
	for i := range n {
		var routes []*url.URL
		for j := range n {
			if j != i {
				routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", route[j])})
			}
		}
		c.opts = append(c.opts, &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: client[i],
			JetStream: true, StoreDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			Cluster: server.ClusterOpts{Name: "sluice-test", Host: "127.0.0.1", Port: route[i]},
			Routes:  routes, NoSigs: true, NoLog: true,
		})
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { c.start(i) })
	}
	wg.Wait()
	t.Cleanup(func() {
		for i := range n {
			c.stop(i)
		}
	})
	return c
}

func (c *jsCluster) start(i int) {
	srv, err := server.NewServer(c.opts[i].Clone())
	if err != nil {
		c.t.Error(err)
		return
	}
	srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		c.t.Errorf("node %d not ready", i+1)
	}
	c.mu.Lock()
	c.srvs[i] = srv
	c.mu.Unlock()
}

func (c *jsCluster) stop(i int) {
	c.mu.Lock()
	srv := c.srvs[i]
	c.srvs[i] = nil
	c.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

func (c *jsCluster) urls() string {
	var us []string
	for _, o := range c.opts {
		us = append(us, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(us, ",")
}

func (c *jsCluster) index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	return -1
}

// publishRetrying publishes records [0, total) as {"n":N,...}, perMsg a
// message, at about rate messages per second, retrying each message until
// the cluster acknowledges it (with a message id, so that a retry of a
// publish whose ack was lost is not stored twice).
func publishRetrying(ctx context.Context, t *testing.T, js jetstream.JetStream, total, perMsg int, rate float64) {
	t.Helper()
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for n := 0; n < total; n += perMsg {
		var b strings.Builder
		for i := n; i < min(n+perMsg, total); i++ {
			fmt.Fprintf(&b, "{\"n\":%d,\"pad\":\"%s\"}\n", i, strings.Repeat("x", 150))
		}
		msg := &nats.Msg{Subject: "ingest.cluster", Data: []byte(b.String()), Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("m-%d", n))
		for attempt := 0; ; attempt++ {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.PublishMsg(pctx, msg)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil || attempt > 100 {
				t.Errorf("publish of records %d..: %v (attempt %d)", n, err, attempt)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// Three sluice instances share one durable consumer on a 3-node
// JetStream cluster (stream with 3 replicas), each writing to a drainer of
// its own. During the load one sluice is killed with SIGKILL, and later the
// stream's leader node is stopped and brought back. When the load ends the
// drainers' outputs together hold every published record; a record may be
// in two outputs only when it was in flight at an instance whose acks were
// lost (the killed one, or during the leader change), so the duplicates are
// bounded by the instances' in-flight limits.
func TestCluster_ThreeInstancesKillAndLeaderChange(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a JetStream cluster and three sluice processes")
	}
	dir := testkit.ShortDir(t)
	cl := startJSCluster(t, dir)
	// JetStream answers once the cluster has elected its meta leader.
	js := connectCluster(t, cl)
	waitFor(t, 60*time.Second, "the JetStream cluster", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
	const inflight = 500 // pipeline.max_inflight_records of each instance
	var runs []*proc
	var outs []string
	for i := range 3 {
		sock, out := filepath.Join(dir, fmt.Sprintf("s%d.sock", i)), filepath.Join(dir, fmt.Sprintf("out%d", i))
		startDrainOpts(t, drain.Options{Socket: sock, Out: out, Framing: "acked"})
		env := []string{
			"SLUICE_QUEUE_URL=" + cl.urls(),
			"SLUICE_QUEUE_REPLICAS=3",
			"SLUICE_QUEUE_MAX_BYTES=64MiB",
			"SLUICE_QUEUE_DEAD_LETTER_MAX_BYTES=16MiB",
			"SLUICE_QUEUE_ACK_WAIT=3s",
			"SLUICE_SINK_SOCKET=" + sock,
			"SLUICE_SINK_FRAMING=acked",
			"SLUICE_SINK_BACKOFF_MIN=10ms",
			"SLUICE_SINK_BACKOFF_MAX=200ms",
			"SLUICE_ADMIN_LISTEN=off",
			"SLUICE_PIPELINE_WORKERS=2",
			"SLUICE_PIPELINE_FETCH_WAIT=50ms",
			"SLUICE_PIPELINE_BATCH_SIZE=50",
			fmt.Sprintf("SLUICE_PIPELINE_MAX_INFLIGHT_RECORDS=%d", inflight),
		}
		p := newProc(t, dir, fmt.Sprintf("run%d", i), env, "run")
		t.Cleanup(func() {
			p.kill()
			if t.Failed() {
				b, _ := os.ReadFile(p.log)
				t.Logf("%s log (last 3 KiB):\n%s", p.name, b[max(0, len(b)-3072):])
			}
		})
		runs = append(runs, p)
		outs = append(outs, out)
	}
	// The first instance creates the streams and the consumer; the others
	// find them (three creating them at once can time out on a loaded
	// cluster, and a sluice that cannot open its queue exits).
	runs[0].start()
	waitFor(t, 60*time.Second, "the stream with 3 replicas", func() error {
		runs[0].restartIfExited() // as systemd's Restart=always would
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "INGEST")
		if err != nil {
			return err
		}
		if r := st.CachedInfo().Config.Replicas; r != 3 {
			return fmt.Errorf("replicas %d", r)
		}
		return nil
	})
	waitFor(t, 30*time.Second, "the consumer", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.Consumer(ctx, "INGEST", "sluice")
		return err
	})
	runs[1].start()
	runs[2].start()
	time.Sleep(500 * time.Millisecond)
	for _, p := range runs {
		p.restartIfExited()
	}

	const total, perMsg = 12000, 10
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); publishRetrying(ctx, t, js, total, perMsg, 300) }()

	time.Sleep(1500 * time.Millisecond)
	runs[0].kill() // its in-flight messages go to the others after ack_wait
	time.Sleep(time.Second)
	var leader int
	waitFor(t, 30*time.Second, "the stream's leader", func() error {
		ictx, icancel := context.WithTimeout(ctx, 2*time.Second)
		defer icancel()
		st, err := js.Stream(ictx, "INGEST")
		if err != nil {
			return err
		}
		info, err := st.Info(ictx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || cl.index(info.Cluster.Leader) < 0 {
			return fmt.Errorf("no leader in %+v", info.Cluster)
		}
		leader = cl.index(info.Cluster.Leader)
		return nil
	})
	cl.stop(leader)
	t.Logf("killed sluice 0, stopped the stream's leader %s", cl.opts[leader].ServerName)
	time.Sleep(1500 * time.Millisecond)
	cl.start(leader)
	<-pubDone

	waitFor(t, 90*time.Second, "every record in the drainers' outputs", distinct(t, total, outs...))
	got := outputCounts(t, outs...)
	dups := 0
	for n := range total {
		if got[n] == 0 {
			t.Fatalf("record %d lost", n)
		}
		dups += got[n] - 1
	}
	t.Logf("%d records, %d duplicated across drainers (in-flight bound %d per instance)", total, dups, inflight)
	if dups > 3*inflight {
		t.Fatalf("%d duplicates across drainers, more than the three instances' in-flight records (%d)", dups, 3*inflight)
	}
	for _, p := range runs[1:] {
		p.stop()
	}
}

// restartIfExited starts p again if it has exited, and reports whether it
// did.
func (p *proc) restartIfExited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		p.t.Logf("%s exited (status %d); starting it again", p.name, p.exit)
		p.start()
		return true
	default:
		return false
	}
}

// sluice run started while its JetStream cluster has no quorum (two of
// three nodes down) waits, retrying, instead of exiting; once the nodes
// are back it opens the stream and delivers.
func TestCluster_StartWaitsForQuorum(t *testing.T) {
	dir := testkit.ShortDir(t)
	c := startJSCluster(t, dir)
	c.stop(1)
	c.stop(2)
	cfg, _ := testConfig(t)
	cfg.Queue.URL = fmt.Sprintf("nats://127.0.0.1:%d", c.opts[0].Port)
	cfg.Queue.Replicas = 3
	out := filepath.Join(dir, "out")
	startDrain(t, cfg.Sink.Socket, out)
	var logs testkit.SyncBuffer
	type started struct {
		svc *service
		err error
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan started, 1)
	go func() {
		svc, err := newService(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		done <- started{svc, err}
	}()
	// The start must be waiting, and saying why.
	testkit.WaitFor(t, 60*time.Second, func() error {
		select {
		case r := <-done:
			t.Fatalf("sluice started without a quorum: %v", r.err)
		default:
		}
		if !strings.Contains(logs.String(), "JetStream unavailable at start; retrying") {
			return fmt.Errorf("no retry logged yet")
		}
		return nil
	})
	var wg sync.WaitGroup
	wg.Go(func() { c.start(1) })
	wg.Go(func() { c.start(2) })
	wg.Wait()
	var r started
	select {
	case r = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("sluice did not start after the quorum came back; log:\n%s", logs.String())
	}
	if r.err != nil {
		t.Fatalf("start after the quorum came back: %v\nlog:\n%s", r.err, logs.String())
	}
	defer r.svc.close()
	runDone := make(chan error, 1)
	go func() { runDone <- r.svc.run(ctx) }()
	js := connectCluster(t, c)
	const total = 200
	publishRetrying(ctx, t, js, total, 10, 200)
	testkit.WaitFor(t, time.Minute, func() error {
		if n := countLines(t, out); n != total {
			return fmt.Errorf("%d of %d records drained", n, total)
		}
		return nil
	})
	cancel()
	<-runDone
}

// connectCluster connects a client to every node of c, reconnecting for
// ever (nodes stop and start during the tests), closed at the test's end.
func connectCluster(t *testing.T, c *jsCluster) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(c.urls(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
