package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the test binary act as the sluice command inside scripts
// (and as the drainer child that sluice demo re-executes).
//
// With SLUICE_TEST_MAIN=1 in the environment the test binary runs Main
// directly: crash tests re-execute it as real sluice processes to kill -9.
// With SLUICE_TEST_ACK_FIRST_DRAINER=1 it is a broken drainer for the
// conformance tests (conformance_test.go).
func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_TEST_MAIN") == "1" {
		os.Exit(Main(os.Args[1:]))
	}
	if os.Getenv("SLUICE_TEST_ACK_FIRST_DRAINER") == "1" {
		os.Exit(ackFirstDrainer(os.Args[1], os.Args[2]))
	}
	testscript.Main(m, map[string]func(){
		"sluice": func() { os.Exit(Main(os.Args[1:])) },
	})
}

// TestScripts runs the CLI scripts in testdata/script: exact output and exit
// codes of sluice check, version, and a short sluice demo.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			// Keep sockets short: $WORK can be long.
			env.Setenv("TMPDIR", os.TempDir())
			// The repository's root, for the shipped example files.
			root, err := filepath.Abs("../..")
			env.Setenv("REPO", root)
			return err
		},
	})
}
