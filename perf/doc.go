// Package perf measures sluice on the machine it runs on, for sluice bench:
// the raw limits of the parts it is built from (a Unix stream socket between
// two processes, the embedded JetStream server publishing and consuming with
// sluice's ack policy) and sluice itself end to end (sluice run and sluice
// drain as child processes, lines and acked framing, 1 and 100 records per
// queue message), with the RSS of the sluice process, so that every sluice
// figure can be read as a fraction of the limits measured in the same run.
//
// perf only measures; it asserts nothing about speed. Its tests check its own
// logic (statistics, /proc parsing, output) and run the whole harness once
// with tiny sizes.
//
// The end-to-end and socket measurements re-execute a sluice binary
// (Options.Exe): the socket reader is the hidden subcommand
// "sluice bench-reader --socket PATH", which calls ServeSocketReader.
//
// # Chaos
//
// Chaos is sluice chaos: the same children (a NATS JetStream server of its
// own, "sluice chaos-nats", which calls ServeNATS; sluice run and sluice
// drain in acked framing) and a load.Generate producer, with SIGKILLs of
// the drainer, sluice run, both, and the NATS server at random moments.
// Unlike the measurements it does assert: VerifyOutput counts every record
// the queue acknowledged in the drainer's committed output
// (ledger.ReadCommitted), and the run fails on any loss or duplicate.
package perf
