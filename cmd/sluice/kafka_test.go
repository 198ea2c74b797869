package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/kafkasrc"
	"github.com/sluice-dev/sluice/wire"
)

// kafkaRig is a fake Kafka cluster (franz-go's kfake, in this process, on
// loopback) and an acked drainer in this process, with sluice run as child
// processes consuming the cluster in one consumer group.
type kafkaRig struct {
	t    *testing.T
	dir  string
	out  string
	cl   *kgo.Client // producer
	env  []string
	runs []*proc
	dreg *prometheus.Registry // the drainer's metrics
}

const kafkaPartitions = 4

func newKafkaRig(t *testing.T) *kafkaRig {
	t.Helper()
	if testing.Short() {
		t.Skip("kafka end-to-end tests start real processes")
	}
	dir := testkit.ShortDir(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(kafkaPartitions, "ingest", "ingest-dlq"), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	r := &kafkaRig{t: t, dir: dir, out: filepath.Join(dir, "out"), cl: cl, dreg: prometheus.NewRegistry()}
	sock := filepath.Join(dir, "s.sock")
	startDrainOpts(t, drain.Options{Socket: sock, Out: r.out, Framing: wire.FramingAcked, Registerer: r.dreg})
	r.env = []string{
		"SLUICE_QUEUE_KIND=kafka",
		"SLUICE_QUEUE_KAFKA_BROKERS=" + strings.Join(c.ListenAddrs(), ","),
		"SLUICE_QUEUE_KAFKA_SESSION_TIMEOUT=1s",
		"SLUICE_SINK_SOCKET=" + sock,
		"SLUICE_SINK_FRAMING=acked",
		"SLUICE_SINK_BACKOFF_MIN=10ms",
		"SLUICE_SINK_BACKOFF_MAX=200ms",
		"SLUICE_SINK_ACK_TIMEOUT=3s",
		"SLUICE_ADMIN_LISTEN=off",
		"SLUICE_PIPELINE_WORKERS=2",
		"SLUICE_PIPELINE_FETCH_WAIT=50ms",
		"SLUICE_LOG_LEVEL=debug",
	}
	return r
}

// run returns a new sluice run child (not started), killed at cleanup.
func (r *kafkaRig) run() *proc {
	p := newProc(r.t, r.dir, fmt.Sprintf("run%d", len(r.runs)), r.env, "run")
	r.runs = append(r.runs, p)
	r.t.Cleanup(func() {
		p.kill()
		if r.t.Failed() || os.Getenv("KAFKA_TEST_LOGS") != "" {
			data, _ := os.ReadFile(p.log)
			lines := strings.Split(string(data), "\n")
			r.t.Logf("last lines of %s:\n%s", p.name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	return p
}

// produce writes records n in [from, to) as {"n":N,...}, perMsg records a
// Kafka record, spread over the partitions, and waits for the brokers'
// acknowledgements.
func (r *kafkaRig) produce(from, to, perMsg int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var batch []*kgo.Record
	flush := func() {
		if err := r.cl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
			r.t.Errorf("produce: %v", err)
		}
		batch = batch[:0]
	}
	for n := from; n < to; n += perMsg {
		var b strings.Builder
		for i := n; i < min(n+perMsg, to); i++ {
			fmt.Fprintf(&b, "{\"n\":%d,\"pad\":\"%s\"}\n", i, strings.Repeat("x", 150))
		}
		batch = append(batch, &kgo.Record{Topic: "ingest", Value: []byte(b.String())})
		if len(batch) == 100 {
			flush()
			time.Sleep(5 * time.Millisecond) // spread the load over the kills
		}
	}
	flush()
}

// count counts the lines of p's log holding s.
func (r *kafkaRig) count(p *proc, s string) int {
	data, _ := os.ReadFile(p.log)
	return strings.Count(string(data), s)
}

// TestKafka_KillSluice SIGKILLs sluice repeatedly, each time once it has
// delivered more since its start, while records it fetched are still in
// flight; the drainer's output holds every record exactly once.
func TestKafka_KillSluice(t *testing.T) {
	r := newKafkaRig(t)
	// Slow processing keeps fetched records in flight when the kill
	// comes: a source that committed them before delivery would lose them.
	// A small in-flight bound keeps what one instance holds at a kill
	// well below the total, so that every kill leaves work for the next.
	r.env = append(r.env, "SLUICE_FAULTS=pipeline.process=delay(50ms)",
		"SLUICE_PIPELINE_BATCH_SIZE=100", "SLUICE_PIPELINE_MAX_INFLIGHT_RECORDS=2000")
	run := r.run()
	const total = 20000
	r.produce(0, total, 10)
	kills := 0
	for deadline := time.Now().Add(60 * time.Second); kills < 4 && time.Now().Before(deadline); kills++ {
		// Each start waits for the group to assign it partitions (a
		// member killed while it joins would only test the group), then
		// for it to deliver, then kills it with records in flight.
		assigned := r.count(run, `kafka partitions assigned" partitions=ingest/`)
		run.start()
		waitFor(t, 30*time.Second, "sluice to be assigned partitions", func() error {
			if r.count(run, `kafka partitions assigned" partitions=ingest/`) == assigned {
				return fmt.Errorf("not yet (log: %s)", run.log)
			}
			return nil
		})
		before := len(outputCounts(t, r.out))
		if before >= total*9/10 {
			break
		}
		waitFor(t, 30*time.Second, "sluice to deliver after its start", func() error {
			if n := len(outputCounts(t, r.out)); n < before+total/25 {
				return fmt.Errorf("%d records drained, %d when it was assigned partitions", n, before)
			}
			return nil
		})
		run.kill()
	}
	run.start()
	t.Logf("%d kills", kills)
	if kills < 3 {
		t.Fatalf("only %d kills happened; the test proves nothing", kills)
	}
	waitFor(t, 90*time.Second, "every record drained", distinct(t, total, r.out))
	run.stop()
	exactlyOnce(t, total, r.out)
	t.Logf("the drainer dropped %v redelivered duplicates", gatherSum(t, r.dreg, "sluice_drain_duplicates_total"))
}

// TestKafka_SecondConsumerJoins starts a second sluice in the group while
// records are produced: the group moves partitions to it, the first one
// commits what it delivered from them, and the drainer's output holds every
// record exactly once.
func TestKafka_SecondConsumerJoins(t *testing.T) {
	r := newKafkaRig(t)
	a, b := r.run(), r.run()
	a.start()
	const total = 20000
	r.produce(0, total/2, 10)
	waitFor(t, 30*time.Second, "the first sluice to deliver", func() error {
		if n := len(outputCounts(t, r.out)); n < total/20 {
			return fmt.Errorf("%d records drained", n)
		}
		return nil
	})
	b.start()
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); r.produce(total/2, total, 10) }()
	waitFor(t, 30*time.Second, "the second sluice to be assigned partitions", func() error {
		data, _ := os.ReadFile(b.log)
		if !strings.Contains(string(data), `kafka partitions assigned" partitions=ingest/`) {
			return fmt.Errorf("not yet (log: %s)", b.log)
		}
		return nil
	})
	<-pubDone
	waitFor(t, 90*time.Second, "every record drained", distinct(t, total, r.out))
	a.stop()
	b.stop()
	exactlyOnce(t, total, r.out)
	t.Logf("the drainer dropped %v redelivered duplicates", gatherSum(t, r.dreg, "sluice_drain_duplicates_total"))
	la, _ := os.ReadFile(a.log)
	if !strings.Contains(string(la), `kafka partitions revoked; delivered records committed, the rest left to the next owner" partitions=ingest/`) {
		t.Errorf("the first sluice logged no revocation (log: %s)", a.log)
	}
}

// TestService_KafkaDeadLettersAndCommits runs the service in this process on
// the Kafka source, in acked framing: valid records reach the drainer,
// invalid ones the dead-letter topic with their reason, and the group's
// committed offsets reach the end of every partition.
func TestService_KafkaDeadLettersAndCommits(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "ingest", "ingest-dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg, dir := testConfig(t)
	cfg.Queue.Kind = config.QueueKafka
	cfg.Queue.Kafka.Brokers = c.ListenAddrs()
	cfg.Queue.Kafka.SessionTimeout = 6 * time.Second
	cfg.Sink.Framing = wire.FramingAcked
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	startDrainOpts(t, drain.Options{Socket: cfg.Sink.Socket, Out: out, Framing: wire.FramingAcked})
	_, stop := startService(t, cfg)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ConsumeTopics("ingest-dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	valid := fmt.Sprintf(`{"n":%%d,"pad":"%s"}`, strings.Repeat("x", 150))
	var rs []*kgo.Record
	for _, v := range []string{fmt.Sprintf(valid, 0), "{broken", fmt.Sprintf(valid, 1) + "\n[1,2\n" + fmt.Sprintf(valid, 2), fmt.Sprintf(valid, 3)} {
		rs = append(rs, &kgo.Record{Topic: "ingest", Value: []byte(v)})
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "valid records drained", distinct(t, 4, out))
	var got []string
	for len(got) < 2 && ctx.Err() == nil {
		cl.PollRecords(ctx, 10).EachRecord(func(r *kgo.Record) {
			reason := ""
			for _, h := range r.Headers {
				if h.Key == kafkasrc.HeaderReason {
					reason = string(h.Value)
				}
			}
			got = append(got, fmt.Sprintf("%s [%s]", r.Value, reason))
		})
	}
	slices.Sort(got)
	if len(got) != 2 || !strings.HasPrefix(got[0], "[1,2 [invalid_json: ") || !strings.HasPrefix(got[1], "{broken [invalid_json: ") {
		t.Fatalf("dead letters = %q; want the two bad records with an invalid-JSON reason", got)
	}
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, "ingest")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every offset committed", func() error {
		fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer fcancel()
		os, err := adm.FetchOffsets(fctx, cfg.Queue.Kafka.Group)
		if err != nil {
			return err
		}
		var lag []string
		ends.Each(func(e kadm.ListedOffset) {
			if o, ok := os.Lookup(e.Topic, e.Partition); e.Offset > 0 && (!ok || o.At != e.Offset) {
				lag = append(lag, fmt.Sprintf("%s/%d: committed %d of %d", e.Topic, e.Partition, o.At, e.Offset))
			}
		})
		if len(lag) > 0 {
			return errors.New(strings.Join(lag, ", "))
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, 4, out)
}
