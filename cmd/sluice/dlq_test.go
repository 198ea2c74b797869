package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/dlq"
)

func TestFilterFlags(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		since string
		want  time.Time
		err   string
	}{
		{"", time.Time{}, ""},
		{"1h", now.Add(-time.Hour), ""},
		{"2026-01-01T00:00:00Z", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), ""},
		{"yesterday", time.Time{}, `--since "yesterday": want a time like`},
	} {
		f, err := filterFlags{reason: "rejected", since: tc.since}.filter(now)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("--since %q: err %v, want %q", tc.since, err, tc.err)
			}
		case err != nil || !f.Since.Equal(tc.want) || f.Reason != "rejected":
			t.Errorf("--since %q: %+v, %v; want since %v", tc.since, f, err, tc.want)
		}
	}
}

// TestService_DeadLettersReplayed: records a reject step sent to the
// dead-letter subject are listed with their headers and, once the step is
// fixed, replayed to their subject and delivered.
func TestService_DeadLettersReplayed(t *testing.T) {
	cfg, dir := testConfig(t)
	cfg.Process.Steps = []config.Step{{Reject: &config.Reject{If: "amount < 0", Reason: "negative amount"}}}
	out := dir + "/out"
	startDrain(t, cfg.Sink.Socket, out)
	svc, stop := startService(t, cfg)
	js := publisher(t, svc)
	ctx := context.Background()
	if _, err := js.Publish(ctx, "ingest.x", []byte("{\"n\":1,\"amount\":5}\n{\"n\":2,\"amount\":-5}")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every message acked", consumerSettled(t, js, cfg))
	var letters []dlq.Letter
	if err := dlq.List(ctx, js, cfg.Queue.DeadLetterStream, dlq.Filter{Reason: "rejected"}, func(l dlq.Letter) error {
		letters = append(letters, l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(letters) != 1 || letters[0].Step != 0 || letters[0].Rule != "reject" || letters[0].Origin() != "INGEST:1:1" ||
		letters[0].Subject != "ingest.x" || string(letters[0].Data) != `{"n":2,"amount":-5}` {
		t.Fatalf("dead letters = %+v", letters)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The fix: no reject step. Then replay.
	cfg.Process.Steps = nil
	svc, _ = startService(t, cfg)
	js = publisher(t, svc)
	n, err := dlq.Replay(ctx, js, cfg.Queue.DeadLetterStream, dlq.Filter{Reason: "rejected"})
	if err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	waitFor(t, 30*time.Second, "the replayed record drained", func() error {
		if got := drained(t, out); len(got) != 2 {
			return fmt.Errorf("%d records drained", len(got))
		}
		return nil
	})
	s, err := js.Stream(ctx, cfg.Queue.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Fatalf("dead-letter stream after replay: %+v, %v", info.State, err)
	}
}
