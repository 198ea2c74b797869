package queue

import (
	"time"

	"github.com/sluice-dev/sluice/config"
)

// Defaults for zero-valued queue settings. The config package applies the
// same defaults when loading a file; these keep the queue usable when built
// from a bare config.Queue (tests, embedding programs).
const (
	DefaultDataDir           = "./sluice-data"
	DefaultListen            = "127.0.0.1:4222"
	DefaultStream            = "INGEST"
	DefaultSubject           = "ingest.>"
	DefaultConsumer          = "sluice"
	DefaultDeadLetterSubject = "dlq.ingest"
	DefaultDeadLetterStream  = "DLQ"
	DefaultAckWait           = 30 * time.Second
	DefaultMaxAckPending     = 20000
)

// withDefaults returns cfg with every zero value replaced by its default.
func withDefaults(cfg config.Queue) config.Queue {
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if len(cfg.Subjects) == 0 {
		cfg.Subjects = []string{DefaultSubject}
	}
	if cfg.Consumer == "" {
		cfg.Consumer = DefaultConsumer
	}
	if cfg.DeadLetterSubject == "" {
		cfg.DeadLetterSubject = DefaultDeadLetterSubject
	}
	if cfg.DeadLetterStream == "" {
		cfg.DeadLetterStream = DefaultDeadLetterStream
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.MaxAckPending <= 0 {
		cfg.MaxAckPending = DefaultMaxAckPending
	}
	return cfg
}
