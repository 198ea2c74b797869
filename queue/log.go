package queue

// component is the queue's value of obs.KeyComponent.
const component = "queue"

// Log attribute keys the shared set in package obs does not have yet.
// TODO(obs): move these to obs/log.go and use the obs.Key* constants.
const (
	keyConsumer          = "consumer"            // a durable consumer's name
	keyEpoch             = "epoch"               // a stream incarnation (record.MsgID.Epoch)
	keyDataDir           = "data_dir"            // the embedded server's data directory
	keyInProcess         = "in_process"          // a connection to the embedded server, without TCP
	keyReconnects        = "reconnects"          // reconnects of a NATS connection so far
	keySubjects          = "subjects"            // the subjects a stream captures
	keyDeadLetterSubject = "dead_letter_subject" // the dead-letter subject
	keyAckWait           = "ack_wait"            // the consumer's ack wait
	keyMaxAckPending     = "max_ack_pending"     // the consumer's max ack pending
	keyFatal             = "fatal"               // a nats-server log line at fatal level
)
