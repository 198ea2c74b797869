// Package kafkasrc is sluice's Kafka source: it consumes topics as a member
// of a consumer group and implements the pipeline's Source and
// DeadLetterer with github.com/twmb/franz-go.
//
// Record identity. A Kafka record is one queue message; its identity is
// record.MsgID{Stream: "<topic>/<partition>", Epoch: the topic's ID folded
// to 64 bits, Seq: offset+1}. Sequence 0 is reserved by the socket protocol
// (docs/protocol.md §4.3) and Kafka offsets start at 0, hence the +1. A
// topic deleted and created again gets a new topic ID, so its reused
// offsets are new data to the drainer. A broker that reports no topic IDs
// (Kafka before 2.8) gives epoch 0.
//
// Commits. Offsets are committed by the Source, never automatically: Ack
// marks records delivered, and the committed offset of a partition is the
// end of its contiguous prefix of delivered records (partitionTrack), so it
// never passes a record that is fetched and not yet delivered. The commits
// are sent by one goroutine, coalesced: a crash loses at most the latest
// ones, which only means redelivery, and the drainer drops what it already
// has by identity. When the group takes a partition away, the Source
// commits what was delivered from it and abandons the rest: those records
// go to the partition's next owner, from the committed offset.
//
// Nak. Kafka has no per-record negative acknowledgement: a nak'ed record
// stays uncommitted (holding its partition's commit back) and the Source
// hands it to the pipeline again from memory after NakDelay.
//
// Positions. Positions reports each assigned partition's high watermark as
// the stream's last sequence (offset+1 of its last record), for the
// drainer's rewind check in each HELLO. Only assigned partitions: the
// watermark is read after the assignment, so after the previous owner
// stopped fetching, and is at least every offset any member delivered from
// the partition, even when several instances share one drainer. (A
// partition's other streams would race: another member may deliver records
// produced after the read before the drainer checks, which looks like a
// rewind.) The rest are left out, unchecked on that connection.
package kafkasrc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

// Headers set on dead letters.
const (
	// HeaderReason is why the record was rejected: one line, at most 1 KiB.
	HeaderReason = "Sluice-Reason"
	// HeaderSourceTopic is the topic the record came from.
	HeaderSourceTopic = "Sluice-Source-Topic"
	// HeaderSourcePartition is its partition, in decimal.
	HeaderSourcePartition = "Sluice-Source-Partition"
	// HeaderSourceOffset is its offset in the partition, in decimal.
	HeaderSourceOffset = "Sluice-Source-Offset"
	// HeaderSourceEpoch is the topic's incarnation (record.MsgID.Epoch),
	// in decimal.
	HeaderSourceEpoch = "Sluice-Source-Epoch"
	// HeaderRecordIndex is the 0-based index of the record within its
	// Kafka record, in decimal; absent when the dead letter holds the
	// whole payload (DeadLetter with a negative index).
	HeaderRecordIndex = "Sluice-Record-Index"
)

// NakDelay is how long a nak'ed message waits before it is handed out
// again.
const NakDelay = 100 * time.Millisecond

// Log keys of this package.
const (
	keyPartitions = "partitions"
	keyWhy        = "why"
)

// maxReasonLen caps the HeaderReason value.
const maxReasonLen = 1024

// maxStreamName is the longest stream name of the socket protocol; a
// topic's stream names are "<topic>/<partition>".
const maxStreamName = 255

// positionBytes bounds the HELLO's position table, which shares the
// 4096-byte handshake limit with the rest of the HELLO.
const positionBytes = 3072

// commitRetry is how long the committer waits after a failed commit.
const commitRetry = 200 * time.Millisecond

var (
	_ pipeline.Source       = (*Source)(nil)
	_ pipeline.DeadLetterer = (*Source)(nil)
)

// Message is one Kafka record as the pipeline sees it.
type Message struct {
	rec   *kgo.Record
	track *partitionTrack // the assignment it was fetched under
	id    record.MsgID
	due   time.Time // when nak'ed: when to hand it out again
}

var _ pipeline.Message = (*Message)(nil)

// Data returns the record's value.
func (m *Message) Data() []byte { return m.rec.Value }

// Subject returns the topic the record was read from.
func (m *Message) Subject() string { return m.rec.Topic }

// ID returns the record's identity: stream "<topic>/<partition>", the
// topic's epoch and offset+1.
func (m *Message) ID() record.MsgID { return m.id }

// Partition and Offset locate the record in Kafka.
func (m *Message) Partition() int32 { return m.rec.Partition }

// Offset is the record's offset in its partition.
func (m *Message) Offset() int64 { return m.rec.Offset }

type topicPartition struct {
	topic     string
	partition int32
}

// Source consumes a consumer group's share of the topics. Fetch is called
// from one goroutine at a time; Ack, Nak, DeadLetter and Positions from any.
//
// Lock order: mu is never held across a call into the Kafka client.
type Source struct {
	cl  *kgo.Client
	adm *kadm.Client
	cfg Options
	log *slog.Logger

	mu     sync.Mutex
	tracks map[topicPartition]*partitionTrack // the assigned partitions; guarded by mu
	epochs map[string]uint64                  // topic → epoch, from metadata; guarded by mu
	naked  []*Message                         // waiting to be handed out again, by due time; guarded by mu

	kick     chan struct{}      // wakes the committer; buffered 1
	stop     chan struct{}      // closed by Close
	cancel   context.CancelFunc // ends the committer's commit in flight, at Close
	done     chan struct{}      // closed when the committer exits
	closeMu  sync.Mutex
	isClosed bool
}

// Open connects to the brokers, checks that the topics and the dead-letter
// topic exist, joins the consumer group and returns the Source. Zero fields
// of opts take their defaults. Close it when done.
func Open(ctx context.Context, opts Options) (*Source, error) {
	cfg := opts.WithDefaults()
	if slices.Contains(cfg.Topics, cfg.DeadLetterTopic) {
		return nil, fmt.Errorf("kafka: the dead-letter topic %q is also consumed, so dead letters would be consumed again: choose another queue.kafka.dead_letter_topic", cfg.DeadLetterTopic)
	}
	for _, t := range cfg.Topics {
		if len(t)+1+10 > maxStreamName {
			return nil, fmt.Errorf("kafka: topic name %q is too long for a stream name of the socket protocol (at most %d bytes with \"/<partition>\"): consume a topic with a shorter name", t, maxStreamName)
		}
	}
	s := &Source{
		cfg:    cfg,
		log:    cfg.Logger,
		tracks: make(map[topicPartition]*partitionTrack),
		epochs: make(map[string]uint64),
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(cfg.SessionTimeout),
		// A rebalance waits this long for the members to rejoin: a killed
		// member holds the group back no longer than its silence does.
		kgo.RebalanceTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(max(cfg.SessionTimeout/10, 100*time.Millisecond)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(s.assigned),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.lost),
		kgo.FetchMaxWait(time.Second),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		return nil, fmt.Errorf("kafka: configure the client for brokers %v: %w", cfg.Brokers, err)
	}
	s.cl, s.adm = cl, kadm.NewClient(cl)
	if err := s.checkTopics(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.committer(cctx)
	return s, nil
}

// checkTopics reads the topics' IDs (their epochs) and fails when a topic
// or the dead-letter topic does not exist.
func (s *Source) checkTopics(ctx context.Context) error {
	all := append(slices.Clone(s.cfg.Topics), s.cfg.DeadLetterTopic)
	md, err := s.adm.Metadata(ctx, all...)
	if err != nil {
		return fmt.Errorf("kafka: read metadata of topics %v from brokers %v: %w; check queue.kafka.brokers and that the brokers are up", all, s.cfg.Brokers, err)
	}
	var missing []string
	for _, t := range all {
		d, ok := md.Topics[t]
		if !ok || d.Err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kafka: topics %v do not exist on brokers %v (sluice does not create topics): create them, e.g. kafka-topics.sh --create --topic NAME", missing, s.cfg.Brokers)
	}
	s.mu.Lock()
	for t, d := range md.Topics {
		s.epochs[t] = epochOf(d.ID)
	}
	s.mu.Unlock()
	return nil
}

// epochOf folds a 128-bit topic ID into a 64-bit epoch; the zero ID (a
// broker without topic IDs) gives 0.
func epochOf(id [16]byte) uint64 {
	return binary.BigEndian.Uint64(id[:8]) ^ binary.BigEndian.Uint64(id[8:])
}

func streamName(topic string, partition int32) string {
	return topic + "/" + strconv.FormatInt(int64(partition), 10)
}

// assigned starts tracking newly assigned partitions. The client calls it
// before it fetches from them.
func (s *Source) assigned(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			// A partition already tracked keeps its track: a fresh one
			// would start past the records still in flight.
			if tp := (topicPartition{t, p}); s.tracks[tp] == nil {
				s.tracks[tp] = newPartitionTrack(t, p)
			}
		}
	}
	if len(parts) > 0 {
		s.log.Info("kafka partitions assigned", keyPartitions, fmtParts(parts))
	}
}

// revoked commits what was delivered from the revoked partitions and stops
// tracking them; their undelivered records go to the next owner.
func (s *Source) revoked(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
	offsets := s.release(parts, true)
	if len(offsets) > 0 {
		s.commitSync(ctx, cl, offsets, "revoked")
	}
	if len(parts) > 0 {
		s.log.Info("kafka partitions revoked; delivered records committed, the rest left to the next owner", keyPartitions, fmtParts(parts))
	}
}

// lost stops tracking partitions the group took away without a revocation
// (the member was fenced): a commit would fail, so none is tried.
func (s *Source) lost(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	s.release(parts, false)
	if len(parts) == 0 {
		return
	}
	s.log.Warn("kafka partitions lost (the member left the group); their records will be redelivered", keyPartitions, fmtParts(parts))
}

// release stops tracking parts and, with wantCommit, returns their
// committable offsets not yet sent.
func (s *Source) release(parts map[string][]int32, wantCommit bool) map[string]map[int32]kgo.EpochOffset {
	s.mu.Lock()
	defer s.mu.Unlock()
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	for t, ps := range parts {
		for _, p := range ps {
			tp := topicPartition{t, p}
			tr := s.tracks[tp]
			if tr == nil {
				continue
			}
			delete(s.tracks, tp)
			if wantCommit && tr.dirty() {
				addOffset(offsets, tr)
			}
		}
	}
	return offsets
}

func addOffset(offsets map[string]map[int32]kgo.EpochOffset, tr *partitionTrack) {
	if offsets[tr.topic] == nil {
		offsets[tr.topic] = make(map[int32]kgo.EpochOffset)
	}
	offsets[tr.topic][tr.partition] = kgo.EpochOffset{Epoch: tr.epoch, Offset: tr.commit}
	tr.sent = tr.commit
}

// commitSync commits offsets and logs a failure.
func (s *Source) commitSync(ctx context.Context, cl *kgo.Client, offsets map[string]map[int32]kgo.EpochOffset, why string) error {
	var cerr error
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 && cerr == nil {
					cerr = fmt.Errorf("partition %s: error code %d", streamName(t.Topic, p.Partition), p.ErrorCode)
				}
			}
		}
	})
	if cerr != nil {
		s.log.Warn("kafka offset commit failed; the records after the last commit will be redelivered if this member stops", keyWhy, why, obs.KeyErr, cerr)
	}
	return cerr
}

// Fetch returns up to max messages: nak'ed ones that are due first, else
// what the client fetched within maxWait.
func (s *Source) Fetch(ctx context.Context, max int, maxWait time.Duration) ([]pipeline.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if out, wait := s.takeNaked(max); len(out) > 0 {
		return out, nil
	} else if wait > 0 && wait < maxWait {
		maxWait = wait
	}
	pctx, cancel := context.WithTimeout(ctx, maxWait)
	defer cancel()
	fs := s.cl.PollRecords(pctx, max)
	if fs.IsClientClosed() {
		return nil, errors.New("kafka: the client is closed")
	}
	var ferr error
	fs.EachError(func(t string, p int32, err error) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return
		}
		if ferr == nil {
			ferr = fmt.Errorf("kafka: fetch from %s: %w", streamName(t, p), err)
		}
	})
	out := make([]pipeline.Message, 0, fs.NumRecords())
	s.mu.Lock()
	fs.EachTopic(func(ft kgo.FetchTopic) {
		epoch := epochOf(ft.TopicID)
		if epoch == 0 {
			epoch = s.epochs[ft.Topic]
		}
		for _, fp := range ft.Partitions {
			tr := s.tracks[topicPartition{ft.Topic, fp.Partition}]
			if tr == nil {
				continue // revoked since the fetch: the next owner reads it
			}
			stream := streamName(ft.Topic, fp.Partition)
			for _, r := range fp.Records {
				if !tr.add(r.Offset, r.LeaderEpoch) {
					continue
				}
				out = append(out, &Message{rec: r, track: tr, id: record.MsgID{Stream: stream, Epoch: epoch, Seq: uint64(r.Offset) + 1}})
			}
		}
	})
	s.mu.Unlock()
	if len(out) > 0 {
		// Once tracked, records must reach the pipeline, which naks them
		// if ctx has ended: dropping them would leave holes in the
		// delivered prefix.
		return out, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, ferr
}

// takeNaked returns up to max nak'ed messages that are due, and otherwise
// how long until the first one is.
func (s *Source) takeNaked(max int) ([]pipeline.Message, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var out []pipeline.Message
	i := 0
	for ; i < len(s.naked) && len(out) < max; i++ {
		m := s.naked[i]
		if m.due.After(now) {
			break
		}
		if s.tracks[topicPartition{m.rec.Topic, m.rec.Partition}] != m.track {
			continue // revoked: the next owner reads it
		}
		out = append(out, m)
	}
	s.naked = append(s.naked[:0], s.naked[i:]...)
	if len(out) == 0 && len(s.naked) > 0 {
		return nil, s.naked[0].due.Sub(now)
	}
	return out, 0
}

// Ack marks msgs delivered. The committer commits each partition's
// delivered prefix soon after; Ack does not wait for it.
func (s *Source) Ack(msgs []pipeline.Message) error {
	moved := false
	s.mu.Lock()
	for _, pm := range msgs {
		m := pm.(*Message)
		if s.tracks[topicPartition{m.rec.Topic, m.rec.Partition}] != m.track {
			continue // revoked: the next owner redelivers it, the drainer drops the copy
		}
		if m.track.done(m.rec.Offset) {
			moved = true
		}
	}
	s.mu.Unlock()
	if moved {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// Nak hands msgs out again after NakDelay; until they are acked, their
// partitions' commits stay below them.
func (s *Source) Nak(msgs []pipeline.Message) error {
	due := time.Now().Add(NakDelay)
	s.mu.Lock()
	for _, pm := range msgs {
		m := pm.(*Message)
		m.due = due
		s.naked = append(s.naked, m)
	}
	s.mu.Unlock()
	return nil
}

// committer sends the committable offsets, coalesced, until Close.
func (s *Source) committer(ctx context.Context) {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		if err := s.commitDirty(ctx); err != nil {
			select {
			case <-s.stop:
				return
			case <-time.After(commitRetry):
			}
			select {
			case s.kick <- struct{}{}:
			default:
			}
		}
	}
}

// commitDirty commits every assigned partition's committable offset that
// was not sent yet. On failure those offsets are marked unsent again.
func (s *Source) commitDirty(ctx context.Context) error {
	s.mu.Lock()
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	var sent []*partitionTrack
	prev := make(map[*partitionTrack]int64)
	for _, tr := range s.tracks {
		if tr.dirty() {
			prev[tr] = tr.sent
			addOffset(offsets, tr)
			sent = append(sent, tr)
		}
	}
	s.mu.Unlock()
	if len(offsets) == 0 {
		return nil
	}
	err := s.commitSync(ctx, s.cl, offsets, "delivered")
	if err != nil {
		s.mu.Lock()
		for _, tr := range sent {
			if tr.sent == offsets[tr.topic][tr.partition].Offset {
				tr.sent = prev[tr]
			}
		}
		s.mu.Unlock()
	}
	return err
}

// DeadLetter produces rec to the dead-letter topic and waits for the
// brokers' acknowledgement (all in-sync replicas).
func (s *Source) DeadLetter(ctx context.Context, from pipeline.Message, index int, rec []byte, reason string) error {
	m := from.(*Message)
	if i := strings.IndexAny(reason, "\r\n"); i >= 0 {
		reason = reason[:i]
	}
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	hs := []kgo.RecordHeader{
		{Key: HeaderReason, Value: []byte(reason)},
		{Key: HeaderSourceTopic, Value: []byte(m.rec.Topic)},
		{Key: HeaderSourcePartition, Value: []byte(strconv.FormatInt(int64(m.rec.Partition), 10))},
		{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(m.rec.Offset, 10))},
		{Key: HeaderSourceEpoch, Value: []byte(strconv.FormatUint(m.id.Epoch, 10))},
	}
	if index >= 0 {
		hs = append(hs, kgo.RecordHeader{Key: HeaderRecordIndex, Value: []byte(strconv.Itoa(index))})
	}
	dl := &kgo.Record{Topic: s.cfg.DeadLetterTopic, Key: m.rec.Key, Value: rec, Headers: hs}
	if err := s.cl.ProduceSync(ctx, dl).FirstErr(); err != nil {
		return fmt.Errorf("kafka: produce dead letter of %s offset %d to topic %s: %w", streamName(m.rec.Topic, m.rec.Partition), m.rec.Offset, s.cfg.DeadLetterTopic, err)
	}
	return nil
}

// Positions returns, for each partition assigned to this member, its high
// watermark as the stream's last sequence (the last record's offset+1),
// under the topic's epoch, for the drainer's rewind check (see the package
// comment for why only those). Partitions past what a HELLO holds
// (wire.MaxPositions, or the handshake's size) are left out, unchecked;
// the first by name are kept.
func (s *Source) Positions(ctx context.Context) ([]wire.StreamPosition, error) {
	s.mu.Lock()
	assigned := make(map[topicPartition]bool, len(s.tracks))
	for tp := range s.tracks {
		assigned[tp] = true
	}
	s.mu.Unlock()
	if len(assigned) == 0 {
		return nil, nil
	}
	md, err := s.adm.Metadata(ctx, s.cfg.Topics...)
	if err != nil {
		return nil, fmt.Errorf("kafka: read topic metadata: %w", err)
	}
	ends, err := s.adm.ListEndOffsets(ctx, s.cfg.Topics...)
	if err != nil {
		return nil, fmt.Errorf("kafka: list end offsets: %w", err)
	}
	var out []wire.StreamPosition
	s.mu.Lock()
	for t, d := range md.Topics {
		if d.Err == nil {
			s.epochs[t] = epochOf(d.ID)
		}
	}
	epochs := maps.Clone(s.epochs)
	s.mu.Unlock()
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset < 0 || !assigned[topicPartition{o.Topic, o.Partition}] {
			return
		}
		out = append(out, wire.StreamPosition{Stream: streamName(o.Topic, o.Partition), Epoch: epochs[o.Topic], LastSeq: uint64(o.Offset)})
	})
	slices.SortFunc(out, func(a, b wire.StreamPosition) int {
		return strings.Compare(a.Stream, b.Stream)
	})
	size := 0
	for i, p := range out {
		size += 2 + len(p.Stream) + 16
		if i == wire.MaxPositions || size > positionBytes {
			s.log.Debug("kafka: more partitions than a HELLO holds; the rest are not rewind-checked", "kept", i, "partitions", len(out))
			return out[:i], nil
		}
	}
	return out, nil
}

// Ping checks that a broker answers, for readiness.
func (s *Source) Ping(ctx context.Context) error {
	return s.cl.Ping(ctx)
}

// Close commits what was delivered, leaves the group and closes the
// client. Messages not yet acked are redelivered to the group. Call it
// after the pipeline has stopped.
func (s *Source) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.isClosed {
		return nil
	}
	s.isClosed = true
	close(s.stop)
	s.cancel()
	<-s.done
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.commitDirty(ctx)
	// Leaving waits for a rebalance in progress; past the timeout the
	// group notices the member gone at its session timeout instead.
	if lerr := s.cl.LeaveGroupContext(ctx); lerr != nil {
		s.log.Warn("kafka: leaving the consumer group did not finish; the group reassigns this member's partitions after its session timeout", obs.KeyErr, lerr)
	}
	s.cl.Close()
	return err
}

func fmtParts(parts map[string][]int32) string {
	var b []string
	for t, ps := range parts {
		ps = slices.Clone(ps)
		slices.Sort(ps)
		for _, p := range ps {
			b = append(b, streamName(t, p))
		}
	}
	slices.Sort(b)
	return strings.Join(b, ",")
}
