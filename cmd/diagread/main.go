// Command diagread reads acpidiag host-side data: decode an ERST backing
// file with "diagread erst".
//
// Minimal dispatcher created by the ERST helper because main.go did not exist
// yet; the region helper owns this file and replaces it.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "erst" {
		return runErst(args[1:], stdout, stderr)
	}
	fmt.Fprintln(stderr, "usage: diagread erst [--json] [--summary] BACKINGFILE")
	return 2
}
