// Package bench holds sluice's cross-package overhead benchmarks: what the
// observability promises (DESIGN.md, promise 7) cost on the data path. It
// has no non-test code; see overhead_test.go and results.txt.
package bench
