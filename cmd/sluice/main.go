// Command sluice is the one binary of the sluice data-ingest service: the
// service itself (run), the reference drainer (drain), a one-command demo
// (demo), a config checker (check) and version. It wires the parts together
// and maps errors to exit codes; the work happens in the packages.
package main

import (
	"os"
)

func main() { os.Exit(Main(os.Args[1:])) }
