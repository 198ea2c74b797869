package queue_test

import (
	"context"
	"testing"

	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/queue"
)

func TestSource_DeadLetterRejection(t *testing.T) {
	e := newEnv(t, nil)
	publish(t, e.js, 0, 1)
	m := fetchN(t, e.src, 1, false)[0]
	ctx := context.Background()
	why := &pipeline.Rejection{Reason: "invalid_utf8", Step: -1, Rule: "invalid_utf8", Offset: 17, Msg: "invalid UTF-8 byte 0xff inside a string"}
	if err := e.src.DeadLetterRejection(ctx, m, 3, []byte("{\"a\":\"\xff\"}"), why); err != nil {
		t.Fatal(err)
	}
	rej := &pipeline.Rejection{Reason: "rejected", Step: 4, Rule: "reject", Offset: -1, Msg: "negative amount"}
	if err := e.src.DeadLetterRejection(ctx, m, 4, []byte(`{"amount":-1}`), rej); err != nil {
		t.Fatal(err)
	}
	dlq, err := e.js.Stream(ctx, "DLQ")
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64]map[string]string{
		1: {queue.HeaderReason: why.Error(), queue.HeaderReasonCode: "invalid_utf8", queue.HeaderRule: "invalid_utf8", queue.HeaderOffset: "17", queue.HeaderStep: "", queue.HeaderRecordIndex: "3"},
		2: {queue.HeaderReason: "step 4 (reject): negative amount", queue.HeaderReasonCode: "rejected", queue.HeaderRule: "reject", queue.HeaderStep: "4", queue.HeaderOffset: "", queue.HeaderRecordIndex: "4"},
	} {
		sm, err := dlq.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if got := sm.Header.Get(k); got != v {
				t.Errorf("dead letter %d: %s = %q, want %q", seq, k, got, v)
			}
		}
		if sm.Header.Get(queue.HeaderSourceSeq) != "1" || sm.Header.Get(queue.HeaderSourceSubject) == "" {
			t.Errorf("dead letter %d lacks its origin: %v", seq, sm.Header)
		}
	}
}
