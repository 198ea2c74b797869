// Package dlq reads and replays sluice's dead letters: the records (or
// whole messages) that the pipeline stored on the dead-letter subject,
// each with its original bytes and, as headers, why it was rejected and
// where it came from (see the queue package's Header constants).
//
// It talks to JetStream like any client does, so what it does can be done
// with any NATS client too: read the dead-letter stream, republish a
// message's data to its Sluice-Source-Subject, delete it from the stream.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/queue"
)

// Letter is one dead letter.
type Letter struct {
	Seq  uint64    // its sequence in the dead-letter stream
	Time time.Time // when it was stored
	// Why it was rejected.
	Reason string // the whole reason, for people
	Code   string // the reason code ("invalid_utf8", "rejected", …); "" for dead letters stored before codes existed
	Rule   string // the rule broken
	Step   int    // the step in process.steps, or -1
	Offset int    // the byte offset in the record, or -1
	// Where it came from.
	Subject   string // the subject the message was published on
	Stream    string // the stream it was stored in
	SourceSeq uint64 // its sequence there
	Index     int    // the record's index in the message, or -1 for the whole message
	Data      []byte // the original bytes
}

// Origin is "stream:seq" or "stream:seq:index".
func (l Letter) Origin() string {
	s := fmt.Sprintf("%s:%d", l.Stream, l.SourceSeq)
	if l.Index >= 0 {
		s += ":" + strconv.Itoa(l.Index)
	}
	return s
}

// Filter selects dead letters. Its zero value selects all.
type Filter struct {
	// Reason selects the letters whose reason code is Reason, or whose
	// reason contains it. Empty: any.
	Reason string
	// Since selects the letters stored at or after Since. Zero: any.
	Since time.Time
}

// Match reports whether f selects l.
func (f Filter) Match(l Letter) bool {
	if f.Reason != "" && l.Code != f.Reason && !strings.Contains(l.Reason, f.Reason) {
		return false
	}
	return f.Since.IsZero() || !l.Time.Before(f.Since)
}

func intHeader(h nats.Header, k string) int {
	n, err := strconv.Atoi(h.Get(k))
	if err != nil {
		return -1
	}
	return n
}

func letter(m *jetstream.RawStreamMsg) Letter {
	h := m.Header
	seq, _ := strconv.ParseUint(h.Get(queue.HeaderSourceSeq), 10, 64)
	return Letter{
		Seq: m.Sequence, Time: m.Time, Data: m.Data,
		Reason: h.Get(queue.HeaderReason), Code: h.Get(queue.HeaderReasonCode), Rule: h.Get(queue.HeaderRule),
		Step: intHeader(h, queue.HeaderStep), Offset: intHeader(h, queue.HeaderOffset),
		Subject: h.Get(queue.HeaderSourceSubject), Stream: h.Get(queue.HeaderSourceStream), SourceSeq: seq,
		Index: intHeader(h, queue.HeaderRecordIndex),
	}
}

// List calls fn with each dead letter of stream that f selects, oldest
// first, until fn returns an error (which List returns).
func List(ctx context.Context, js jetstream.JetStream, stream string, f Filter, fn func(Letter) error) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("dead-letter stream %q: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("dead-letter stream %q: %w", stream, err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted (replayed) or expired
		}
		if err != nil {
			return fmt.Errorf("dead-letter stream %q seq %d: %w", stream, seq, err)
		}
		if l := letter(m); f.Match(l) {
			if err := fn(l); err != nil {
				return err
			}
		}
	}
	return nil
}

// Replay republishes each dead letter of stream that f selects to its
// original subject (into its original stream), and deletes it from the
// dead-letter stream once JetStream has stored the copy. A letter whose
// publish fails stays where it is, and Replay stops there. It returns how
// many letters it replayed.
//
// Each copy carries the message id "sluice-replay:STREAM:SEQ", so that a
// Replay interrupted between the publish and the delete, and run again
// within the stream's duplicate window, does not store the copy twice.
func Replay(ctx context.Context, js jetstream.JetStream, stream string, f Filter) (int, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("dead-letter stream %q: %w", stream, err)
	}
	n := 0
	err = List(ctx, js, stream, f, func(l Letter) error {
		if l.Subject == "" {
			return fmt.Errorf("dead letter %d has no %s header: cannot tell where to replay it", l.Seq, queue.HeaderSourceSubject)
		}
		msg := &nats.Msg{Subject: l.Subject, Data: l.Data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("sluice-replay:%s:%d", stream, l.Seq))
		opts := []jetstream.PublishOpt{}
		if l.Stream != "" {
			opts = append(opts, jetstream.WithExpectStream(l.Stream))
		}
		if _, err := js.PublishMsg(ctx, msg, opts...); err != nil {
			return fmt.Errorf("replay dead letter %d to %q: %w", l.Seq, l.Subject, err)
		}
		if err := s.DeleteMsg(ctx, l.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("replayed dead letter %d, but could not delete it from %q: %w (replaying again within the duplicate window stores no second copy)", l.Seq, stream, err)
		}
		n++
		return nil
	})
	return n, err
}
