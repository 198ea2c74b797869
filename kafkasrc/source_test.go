package kafkasrc_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/kafkasrc"
	"github.com/sluice-dev/sluice/pipeline"
)

const (
	topic      = "in"
	dlqTopic   = "in-dlq"
	partitions = 3
	group      = "g"
)

// cluster starts a fake Kafka cluster (in-process, loopback) with the
// consumed and dead-letter topics, and returns its address and an admin
// client.
func cluster(t *testing.T) ([]string, *kgo.Client, *kadm.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic, dlqTopic), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addrs := c.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return addrs, cl, kadm.NewClient(cl)
}

// produce writes n records to each partition: "p<partition>-<i>".
func produce(t *testing.T, cl *kgo.Client, n int) {
	t.Helper()
	var rs []*kgo.Record
	for p := range int32(partitions) {
		for i := range n {
			rs = append(rs, &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, `{"p":%d,"i":%d}`, p, i)})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T, addrs []string) *kafkasrc.Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := kafkasrc.Open(ctx, kafkasrc.Options{
		Brokers: addrs, Topics: []string{topic}, Group: group, DeadLetterTopic: dlqTopic,
		SessionTimeout: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// fetchN fetches until it has n messages, for at most 20 s.
func fetchN(t *testing.T, s *kafkasrc.Source, n int) []pipeline.Message {
	t.Helper()
	var got []pipeline.Message
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		ms, err := s.Fetch(context.Background(), n-len(got), 100*time.Millisecond)
		if err != nil {
			t.Logf("fetch: %v", err)
		}
		got = append(got, ms...)
	}
	if len(got) != n {
		t.Fatalf("fetched %d messages in 20s, want %d", len(got), n)
	}
	return got
}

// committed returns the group's committed offset per partition (-1: none).
func committed(t *testing.T, adm *kadm.Client) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	os, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for p := range int32(partitions) {
		out[p] = -1
		if o, ok := os.Lookup(topic, p); ok && o.Err == nil {
			out[p] = o.At
		}
	}
	return out
}

// waitCommitted waits up to 10 s for the committed offsets to be want.
func waitCommitted(t *testing.T, adm *kadm.Client, want map[int32]int64) {
	t.Helper()
	var got map[int32]int64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = committed(t, adm); fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
	}
	t.Fatalf("committed offsets %v, want %v", got, want)
}

func byOffset(ms []pipeline.Message) map[int32]map[int64]pipeline.Message {
	out := map[int32]map[int64]pipeline.Message{}
	for _, pm := range ms {
		m := pm.(*kafkasrc.Message)
		if out[m.Partition()] == nil {
			out[m.Partition()] = map[int64]pipeline.Message{}
		}
		out[m.Partition()][m.Offset()] = m
	}
	return out
}

// TestSource_CommitsDeliveredPrefix acks all but one record of partition 0
// and checks that partition 0's committed offset stops at that record while
// the others reach their end; once the record is nak'ed, handed out again
// and acked, partition 0 is committed to its end too.
func TestSource_CommitsDeliveredPrefix(t *testing.T) {
	addrs, cl, adm := cluster(t)
	produce(t, cl, 10)
	s := open(t, addrs)
	ms := fetchN(t, s, 10*partitions)
	idx := byOffset(ms)
	for p := range int32(partitions) {
		if len(idx[p]) != 10 {
			t.Fatalf("partition %d: %d records fetched, want 10", p, len(idx[p]))
		}
	}
	held := idx[0][4]
	if id := held.ID(); id.Stream != "in/0" || id.Seq != 5 || id.Epoch == 0 {
		t.Fatalf("identity of in/0 offset 4 = %+v, want stream in/0, seq 5, a non-zero epoch", id)
	}
	var rest []pipeline.Message
	for _, m := range ms {
		if m != held {
			rest = append(rest, m)
		}
	}
	if err := s.Ack(rest); err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, adm, map[int32]int64{0: 4, 1: 10, 2: 10})
	if err := s.Nak([]pipeline.Message{held}); err != nil {
		t.Fatal(err)
	}
	again := fetchN(t, s, 1)
	if again[0].ID() != held.ID() {
		t.Fatalf("after nak: fetched %+v, want %+v again", again[0].ID(), held.ID())
	}
	time.Sleep(100 * time.Millisecond) // a commit would have happened by now: none must
	if got := committed(t, adm); got[0] != 4 {
		t.Fatalf("partition 0 committed to %d while offset 4 is undelivered", got[0])
	}
	if err := s.Ack(again); err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, adm, map[int32]int64{0: 10, 1: 10, 2: 10})
}

// TestSource_Revoke: a second member joins; the first commits what it
// delivered from the partitions it loses and abandons the rest, which the
// second member reads from the committed offset. The first member's
// deliveries are marked without waking its committer, so only the
// revocation can have committed them.
func TestSource_Revoke(t *testing.T) {
	addrs, cl, adm := cluster(t)
	produce(t, cl, 10)
	a := open(t, addrs)
	ms := fetchN(t, a, 10*partitions)
	// Deliver offsets 0..5 and 7 of every partition; 6, 8 and 9 stay
	// undelivered.
	var acked []pipeline.Message
	for _, m := range ms {
		if o := m.(*kafkasrc.Message).Offset(); o <= 5 || o == 7 {
			acked = append(acked, m)
		}
	}
	a.MarkDelivered(acked)
	if c := committed(t, adm); fmt.Sprint(c) != fmt.Sprint(map[int32]int64{0: -1, 1: -1, 2: -1}) {
		t.Fatalf("committed %v before any commit", c)
	}
	b := open(t, addrs)
	// b gets at least one partition, and starts it at offset 6; a keeps
	// polling so that it takes part in the rebalance.
	var gotB []pipeline.Message
	deadline := time.Now().Add(20 * time.Second)
	for len(gotB) == 0 && time.Now().Before(deadline) {
		if _, err := a.Fetch(context.Background(), 100, 50*time.Millisecond); err != nil {
			t.Logf("a: %v", err)
		}
		got, err := b.Fetch(context.Background(), 100, 50*time.Millisecond)
		if err != nil {
			t.Logf("b: %v", err)
		}
		gotB = append(gotB, got...)
	}
	if len(gotB) == 0 {
		t.Fatal("the second member got no records within 20s")
	}
	moved := map[int32]bool{}
	for _, pm := range gotB {
		m := pm.(*kafkasrc.Message)
		moved[m.Partition()] = true
		if m.Offset() < 6 {
			t.Errorf("second member got %s/%d offset %d, which the first delivered and committed", m.Subject(), m.Partition(), m.Offset())
		}
	}
	c := committed(t, adm)
	for p := range moved {
		if c[p] != 6 {
			t.Errorf("partition %d moved to the second member with committed offset %d, want 6 (the delivered prefix)", p, c[p])
		}
	}
	// Stale acks of a's copies of moved partitions change nothing.
	if err := a.Ack(ms); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	c2 := committed(t, adm)
	for p := range moved {
		if c2[p] != 6 {
			t.Errorf("partition %d: committed %d after the old owner acked, want 6", p, c2[p])
		}
	}
}

// TestSource_DeadLetter produces a dead letter with its headers.
func TestSource_DeadLetter(t *testing.T) {
	addrs, cl, _ := cluster(t)
	produce(t, cl, 1)
	s := open(t, addrs)
	ms := fetchN(t, s, partitions)
	m := ms[0].(*kafkasrc.Message)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.DeadLetter(ctx, m, 0, []byte("bad"), "not json\nsecond line"); err != nil {
		t.Fatal(err)
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(dlqTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	fs := rd.PollRecords(ctx, 10)
	if errs := fs.Errors(); len(errs) > 0 {
		t.Fatal(errs)
	}
	rs := fs.Records()
	if len(rs) != 1 || string(rs[0].Value) != "bad" {
		t.Fatalf("dead-letter topic holds %d records (%v), want one \"bad\"", len(rs), rs)
	}
	h := map[string]string{}
	for _, x := range rs[0].Headers {
		h[x.Key] = string(x.Value)
	}
	want := map[string]string{
		kafkasrc.HeaderReason:          "not json",
		kafkasrc.HeaderSourceTopic:     topic,
		kafkasrc.HeaderSourcePartition: strconv.Itoa(int(m.Partition())),
		kafkasrc.HeaderSourceOffset:    "0",
		kafkasrc.HeaderSourceEpoch:     strconv.FormatUint(m.ID().Epoch, 10),
		kafkasrc.HeaderRecordIndex:     "0",
	}
	if fmt.Sprint(h) != fmt.Sprint(want) {
		t.Fatalf("headers %v, want %v", h, want)
	}
}

// TestSource_Positions reports each partition's high watermark as its last
// sequence, under the epoch its records carry.
func TestSource_Positions(t *testing.T) {
	addrs, cl, _ := cluster(t)
	produce(t, cl, 4)
	s := open(t, addrs)
	ms := fetchN(t, s, 4*partitions)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ps, err := s.Positions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != partitions {
		t.Fatalf("%d positions, want %d: %+v", len(ps), partitions, ps)
	}
	for i, p := range ps {
		if want := fmt.Sprintf("in/%d", i); p.Stream != want || p.LastSeq != 4 || p.Epoch != ms[0].ID().Epoch {
			t.Errorf("position %d = %+v, want stream %s, last seq 4, epoch %d", i, p, want, ms[0].ID().Epoch)
		}
	}
}

// TestOpen_MissingTopic names the missing topic.
func TestOpen_MissingTopic(t *testing.T) {
	addrs, _, _ := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := kafkasrc.Open(ctx, kafkasrc.Options{Brokers: addrs, Topics: []string{"nope"}, DeadLetterTopic: dlqTopic})
	if err == nil || !strings.Contains(err.Error(), "[nope] do not exist") {
		t.Fatalf("Open with a missing topic: %v, want an error naming it", err)
	}
}
