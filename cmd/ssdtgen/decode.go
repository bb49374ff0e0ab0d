package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/acpidiag/acpidiag/acpi"
)

// runDecode implements "ssdtgen decode [-offsets] FILE...": each file holds
// one ACPI table (e.g. /sys/firmware/acpi/tables/DSDT, an iasl .aml, a
// QEMU fixture .dat); its header and decoded AML are printed with
// acpi.DescribeTable. A malformed file is reported on stderr as
// "FILE: offset 0x1234: what is wrong" and the next file is decoded; the
// exit status is 1 when any file failed.
func runDecode(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ssdtgen decode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	offsets := fs.Bool("offsets", false, "prefix every ASL line with its byte offset in the table")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ssdtgen decode [-offsets] FILE...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	out := bufio.NewWriterSize(stdout, 64<<10)
	status := 0
	for i, file := range fs.Args() {
		b, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", file, err)
			status = 1
			continue
		}
		if i > 0 {
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "// %s\n", file)
		err = acpi.DescribeTable(out, b, acpi.DescribeOptions{Offsets: *offsets})
		if ferr := out.Flush(); ferr != nil {
			fmt.Fprintf(stderr, "ssdtgen: %v\n", ferr)
			return 1
		}
		if err != nil {
			status = 1
			var fe *acpi.FormatError
			if errors.As(err, &fe) {
				msg := fe.Msg
				if fe.Field != "" {
					msg = fe.Field + ": " + msg
				}
				fmt.Fprintf(stderr, "%s: offset %#x: %s\n", file, fe.Off, msg)
			} else {
				fmt.Fprintf(stderr, "%s: %v\n", file, err)
			}
		}
	}
	return status
}
