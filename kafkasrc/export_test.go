package kafkasrc

import "github.com/sluice-dev/sluice/pipeline"

// MarkDelivered marks msgs delivered as Ack does, without waking the
// committer: only a revocation (or Close) commits them then.
func (s *Source) MarkDelivered(msgs []pipeline.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pm := range msgs {
		m := pm.(*Message)
		if s.tracks[topicPartition{m.rec.Topic, m.rec.Partition}] == m.track {
			m.track.done(m.rec.Offset)
		}
	}
}
