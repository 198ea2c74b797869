package main

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the test binary act as the sluice command inside scripts
// (and as the drainer child that sluice demo re-executes).
func TestMain(m *testing.M) {
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
			return nil
		},
	})
}
