package main

// diagread erst: decode a QEMU acpi-erst backing file (panic logs written by
// the guest kernel's pstore) and print the dump events. All decoding is in
// package hostreader, the formatting in internal/render.

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/internal/render"
)

const erstUsage = `usage: diagread erst [--json] [--summary] BACKINGFILE

Decode a QEMU acpi-erst backing file (the mem-path of the acpi-erst
device's memory backend) and print the kernel log dumps (panics, oopses)
it holds, parts joined oldest first. Guest text is escaped.

Exit status: 0 decoded (record-level problems are listed in the output),
2 bad usage, unreadable file or invalid storage header.
`

// runErst implements "diagread erst". It returns the process exit code.
func runErst(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("erst", erstUsage, stderr)
	asJSON := fs.Bool("json", false, "print JSON (fields documented in docs/erst.md)")
	summary := fs.Bool("summary", false, "omit the log text")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	// Allow flags after the file name too.
	var files []string
	for fs.NArg() > 0 {
		files = append(files, fs.Arg(0))
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return 2
		}
	}
	if len(files) != 1 {
		fmt.Fprintf(stderr, "diagread erst: need exactly one BACKINGFILE, got %d\n", len(files))
		fs.Usage()
		return 2
	}
	path := files[0]
	s, err := hostreader.ReadERSTFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "diagread erst: %s\n", hostreader.EscapeLog(err.Error()))
		return 2
	}
	evs := s.Events()
	if *asJSON {
		if err := render.ERSTJSON(stdout, path, s, evs, !*summary); err != nil {
			fmt.Fprintf(stderr, "diagread erst: %v\n", err)
			return 2
		}
		return 0
	}
	if err := render.ERSTText(stdout, path, s, evs, !*summary); err != nil {
		fmt.Fprintf(stderr, "diagread erst: %v\n", err)
		return 2
	}
	return 0
}
