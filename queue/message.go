package queue

import (
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/pipeline"
)

// Message is one JetStream message as the pipeline sees it. Its stream and
// sequence are parsed once, when it is fetched.
type Message struct {
	msg       jetstream.Msg
	stream    string
	seq       uint64
	delivered uint64
}

var _ pipeline.Message = (*Message)(nil)

// wrap builds a Message from a fetched JetStream message.
func wrap(m jetstream.Msg) (*Message, error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, err
	}
	return &Message{msg: m, stream: md.Stream, seq: md.Sequence.Stream, delivered: md.NumDelivered}, nil
}

// Data returns the payload.
func (m *Message) Data() []byte { return m.msg.Data() }

// Subject returns the subject the message was published on.
func (m *Message) Subject() string { return m.msg.Subject() }

// Stream returns the name of the stream the message is stored in.
func (m *Message) Stream() string { return m.stream }

// Seq returns the message's stream sequence, stable across redeliveries.
func (m *Message) Seq() uint64 { return m.seq }

// NumDelivered returns how many times the message has been delivered,
// counting this delivery (1 on the first).
func (m *Message) NumDelivered() uint64 { return m.delivered }

// JetStream returns the underlying message.
func (m *Message) JetStream() jetstream.Msg { return m.msg }
