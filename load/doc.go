// Package load provides sluice's load generator and its verifier: Generate
// publishes numbered JSON records to NATS JetStream as fast as (or at the
// rate) asked, and a Verifier reads what came out of the other end of the
// pipeline and proves that nothing was lost, nothing was corrupted, and
// counts what was duplicated or reordered, with end-to-end latency
// percentiles.
//
// load talks to the queue and reads drainer output the way any user would.
// Of sluice it imports only the reader of the drainer's committed output
// (ledger.ReadCommitted) and the report renderer; besides, nats.go (and its
// jetstream package), hdrhistogram-go and the Prometheus text format parser.
//
// Run is the whole of sluice load: Generate, a Follower of the drainer's
// output, a report.Sampler for the HTML report, the progress display and
// the reconnects read from sluice's /metrics; Output writes the summary,
// the JSON and the HTML page.
//
// # Record format
//
// Each record is one JSON object on one line, with its fields always in
// this order:
//
//		{"id":"r1a2b-123","run":"r1a2b","seq":123,"key":"k11","ts":1732460000123456789,
//		 "user":{"name":"Grace Hopper","age":45},"amount":4512.07,"tags":["a","b"],
//		 "ok":true,"pad":"abcdefgh..."}
//
//	  - id: "<run>-<seq>", the record's identity; unique across runs.
//	  - run: the run id (GenOptions.RunID), made of [A-Za-z0-9_.:-] only, so it
//	    never needs JSON escaping.
//	  - seq: the record's sequence number within the run. Sequence numbers are
//	    dense: a run produces exactly 1..Result.MaxSeq, shared by all
//	    publishers through one atomic counter, so the verifier keeps a bitset.
//	  - key: a partition key, "k" + (seq mod GenOptions.Keys), used for the
//	    per-key ordering check.
//	  - ts: the send time in Unix nanoseconds (all records of one queue
//	    message share it; it is read once per message just before publishing).
//	  - user, amount, tags, ok: filler of varied JSON types derived from seq
//	    (strings with escapes, a nested object, a decimal, an array, a bool),
//	    so that downstream parsers do some real work.
//	  - pad: a string of [a-z0-9] sized so that the encoded record is
//	    GenOptions.RecordSize ± GenOptions.SizeSpread bytes (uniform, derived
//	    from seq; never shorter than the record with an empty pad).
//
// A deliberately invalid record (GenOptions.Invalid) is the same object with
// a trailing comma before the closing brace ("...","pad":"...",}), which no
// JSON parser accepts. Which sequence numbers are invalid is a deterministic
// function of the run id and seq (see Verifier.MarkInvalidFraction), so a
// later verification needs only the Result, not a list.
//
// A queue message carries GenOptions.PerMessage consecutive records joined
// by '\n' (no trailing newline) and, unless GenOptions.NoMsgID, a
// Nats-Msg-Id header "<run>-<first seq>" so that a retried publish is
// deduplicated by the server.
//
// # Verification
//
// NewVerifier(run, n) expects seqs 1..n of run. Records that the generator
// knows will not arrive are marked before observing: invalid ones
// (MarkInvalid, MarkInvalidFraction) and failed ones, whose publish was not
// acknowledged after the retries (MarkFailed); Expect(result) does both.
// Observe then takes each output line; Report counts received, lost (with
// the first ids), duplicated, reordered per key, malformed, leaked invalid
// records, other runs' records and junk lines, and the latency now−ts.
// The per-key order check is exact only when records entered the queue in
// seq order, that is with Publishers: 1 (several publishers interleave
// their messages); Report.OK never fails a run on it.
//
// A Follower reads a drainer's output directory twice over: live while the
// run goes on (Tail: progress and latency, measured when a line is first
// read), and at the end from what the drainer committed (ledger.ReadCommitted, which
// honours the acked drainer's dedup journal): the final figures (lost,
// duplicated) count only committed records, so bytes a killed drainer wrote
// but never committed, which its restart cuts off, are never counted.
package load
