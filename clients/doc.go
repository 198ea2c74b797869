// Package clients holds sluice's drainer libraries for other languages, and
// the Go tests that run them (so that the README's test command covers
// them):
//
//   - python/sluice_drain.py: one module, standard library only, Python 3.9+;
//   - node/sluice-drain.mjs: one ES module, no dependencies, Node 18+.
//
// Both speak the acked framing of docs/protocol.md and ship an example
// drainer that writes records to a file exactly once. clients_test.go runs
// each library's own suite (python3 -m unittest, node --test: every test
// vector of wire/testdata/vectors, sessions on a real socket, the dedup
// state), and then each example drainer end to end against a real
// `sluice run --framing acked`, killed with SIGKILL mid-run and restarted,
// checking that its output holds every published record exactly once.
//
// The package has no Go API.
package clients
