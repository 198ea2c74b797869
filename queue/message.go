package queue

import (
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/record"
)

// Message is one JetStream message as the pipeline sees it. Its identity
// (stream, epoch, sequence) is parsed once, when it is fetched.
type Message struct {
	msg       jetstream.Msg
	stream    string
	epoch     uint64
	seq       uint64
	delivered uint64
}

var _ pipeline.Message = (*Message)(nil)

// wrap builds a Message from a fetched JetStream message of the stream
// incarnation epoch. It fails when m's metadata (carried in its reply
// subject) cannot be parsed.
func wrap(m jetstream.Msg, epoch uint64) (*Message, error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, err
	}
	return &Message{msg: m, stream: md.Stream, epoch: epoch, seq: md.Sequence.Stream, delivered: md.NumDelivered}, nil
}

// Data returns the payload.
func (m *Message) Data() []byte { return m.msg.Data() }

// Subject returns the subject the message was published on.
func (m *Message) Subject() string { return m.msg.Subject() }

// ID returns the message's identity, stable across redeliveries: the name
// of the stream it is stored in, the stream's epoch (its creation time in
// Unix nanoseconds, read when the Source was opened; 0 when the server did
// not report one) and the message's sequence in the stream.
func (m *Message) ID() record.MsgID {
	return record.MsgID{Stream: m.stream, Epoch: m.epoch, Seq: m.seq}
}

// NumDelivered returns how many times the message has been delivered,
// counting this delivery (1 on the first).
func (m *Message) NumDelivered() uint64 { return m.delivered }
