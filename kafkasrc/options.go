package kafkasrc

import (
	"log/slog"
	"time"
)

// Options configures a Source. Each zero field takes the default given in
// its comment, applied by WithDefaults.
type Options struct {
	// Brokers are the seed brokers, host:port each. Default
	// ["127.0.0.1:9092"].
	Brokers []string
	// Topics are the topics consumed. They must exist. Default ["ingest"].
	Topics []string
	// Group is the consumer group, shared by every sluice instance.
	// Default "sluice".
	Group string
	// DeadLetterTopic receives records that fail processing, one Kafka
	// record each, with the headers of dead letters (HeaderReason, ...).
	// It must exist and must not be one of Topics. Default "ingest-dlq".
	DeadLetterTopic string
	// SessionTimeout is how long the group coordinator waits for a
	// member's heartbeat before it gives the member's partitions to the
	// others: how long the partitions of a killed instance stall. It is
	// also the rebalance timeout, how long a rebalance waits for the
	// members to rejoin. Default 45s (Kafka's).
	SessionTimeout time.Duration
	// Logger receives the source's log lines. Default slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultBroker          = "127.0.0.1:9092"
	DefaultTopic           = "ingest"
	DefaultGroup           = "sluice"
	DefaultDeadLetterTopic = "ingest-dlq"
	DefaultSessionTimeout  = 45 * time.Second
)

// WithDefaults returns o with every zero field replaced by its default.
// Options{}.WithDefaults() gives the defaults themselves.
func (o Options) WithDefaults() Options {
	if len(o.Brokers) == 0 {
		o.Brokers = []string{DefaultBroker}
	}
	if len(o.Topics) == 0 {
		o.Topics = []string{DefaultTopic}
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.DeadLetterTopic == "" {
		o.DeadLetterTopic = DefaultDeadLetterTopic
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = DefaultSessionTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}
