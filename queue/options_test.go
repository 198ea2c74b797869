package queue_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/queue"
)

func TestOptions_WithDefaults(t *testing.T) {
	t.Run("zero", func(t *testing.T) {
		got := queue.Options{}.WithDefaults()
		if got.Logger == nil {
			t.Error("Logger stays nil")
		}
		got.Logger = nil
		want := queue.Options{
			Stream:             queue.DefaultStream,
			Subjects:           []string{queue.DefaultSubject},
			Consumer:           queue.DefaultConsumer,
			DeadLetterSubject:  queue.DefaultDeadLetterSubject,
			DeadLetterStream:   queue.DefaultDeadLetterStream,
			AckWait:            queue.DefaultAckWait,
			MaxAckPending:      queue.DefaultMaxAckPending,
			MaxBytes:           queue.DefaultMaxBytes,
			MaxAge:             queue.DefaultMaxAge,
			Discard:            queue.DefaultDiscard,
			DeadLetterMaxBytes: queue.DefaultDeadLetterMaxBytes,
			DeadLetterMaxAge:   queue.DefaultDeadLetterMaxAge,
			DeadLetterDiscard:  queue.DefaultDeadLetterDiscard,
			Replicas:           1,
			Storage:            queue.StorageFile,
			Linger:             queue.DefaultLinger,
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Options{}.WithDefaults() = %+v, want %+v", got, want)
		}
		eo := queue.EmbeddedOptions{}.WithDefaults()
		if eo.DataDir != queue.DefaultDataDir || eo.Listen != queue.DefaultListen || eo.Logger == nil {
			t.Fatalf("EmbeddedOptions{}.WithDefaults() = %+v", eo)
		}
		if co := (queue.ConnectOptions{}).WithDefaults(); co.Logger == nil || co.URL != "" {
			t.Fatalf("ConnectOptions{}.WithDefaults() = %+v", co)
		}
	})
	t.Run("set values kept", func(t *testing.T) {
		subjects := []string{"a.>"}
		in := queue.Options{Stream: "S", Subjects: subjects, Consumer: "c", DeadLetterSubject: "d", DeadLetterStream: "D",
			AckWait: time.Second, MaxAckPending: 7, DisablePrefetch: true,
			MaxBytes: 1 << 20, MaxAge: time.Hour, Discard: queue.DiscardOld,
			DeadLetterMaxBytes: 1 << 10, DeadLetterMaxAge: time.Minute, DeadLetterDiscard: queue.DiscardOld, Migrate: true,
			Bind: true, Replicas: 3, Storage: queue.StorageMemory, Linger: 5 * time.Millisecond}
		got := in.WithDefaults()
		got.Logger = nil
		if !reflect.DeepEqual(got, in) {
			t.Fatalf("WithDefaults changed set fields: %+v, want %+v", got, in)
		}
		got.Subjects[0] = "changed"
		if subjects[0] != "a.>" {
			t.Fatal("WithDefaults shares Subjects with its caller")
		}
	})
	t.Run("negative durations and counts", func(t *testing.T) {
		got := queue.Options{AckWait: -time.Second, MaxAckPending: -1}.WithDefaults()
		if got.AckWait != queue.DefaultAckWait || got.MaxAckPending != queue.DefaultMaxAckPending {
			t.Fatalf("AckWait %s, MaxAckPending %d; want the defaults", got.AckWait, got.MaxAckPending)
		}
	})
	t.Run("negative limits mean none", func(t *testing.T) {
		got := queue.Options{MaxBytes: -5, MaxAge: -time.Hour, DeadLetterMaxBytes: -1, DeadLetterMaxAge: -time.Second}.WithDefaults()
		if got.MaxBytes != queue.NoLimit || got.MaxAge != queue.NoLimit || got.DeadLetterMaxBytes != queue.NoLimit || got.DeadLetterMaxAge != queue.NoLimit {
			t.Fatalf("limits %d %s %d %s; want NoLimit for each", got.MaxBytes, got.MaxAge, got.DeadLetterMaxBytes, got.DeadLetterMaxAge)
		}
	})
}
