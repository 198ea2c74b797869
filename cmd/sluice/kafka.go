package main

import (
	"context"
	"errors"
	"time"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/kafkasrc"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/pipeline"
)

// source is what the pipeline takes from a queue: messages and their
// settling, and the dead-letter store.
type source interface {
	pipeline.Source
	pipeline.DeadLetterer
}

// isKafka reports whether cfg consumes Kafka (queue.kind: kafka) rather
// than NATS.
func isKafka(cfg *config.Config) bool { return cfg.Queue.Kind == config.QueueKafka }

// openKafka joins the Kafka consumer group of queue.kafka.
func (s *service) openKafka(ctx context.Context) (source, error) {
	ko := kafkaOptions(s.cfg)
	ko.Logger = s.log
	src, err := kafkasrc.Open(ctx, ko)
	if err != nil {
		return nil, err
	}
	s.ksrc = src
	s.log.Info("kafka consumer group joined", obs.KeyURL, ko.Brokers, "group", ko.Group, "topics", ko.Topics)
	return src, nil
}

// queueReady is the readiness check of the queue connection.
func (s *service) queueReady() error {
	if s.ksrc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), readyPingTimeout)
		defer cancel()
		if err := s.ksrc.Ping(ctx); err != nil {
			return errors.New("no Kafka broker answers: " + err.Error())
		}
		return nil
	}
	if !s.nc.IsConnected() {
		return errors.New("not connected to the queue")
	}
	return nil
}

// readyPingTimeout bounds the readiness check's ping of a Kafka broker.
const readyPingTimeout = 2 * time.Second
