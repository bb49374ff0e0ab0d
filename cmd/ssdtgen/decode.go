package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"syscall"

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
		fmt.Fprintln(stderr, "Exit status: 0 every FILE decoded, 1 a FILE could not be read or decoded, 2 usage error.")
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
		b, err := readTable(file)
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

// maxTableSize bounds a table file read by decode: an ACPI table's length
// field is 32 bits, and real DSDTs are well under 1 MiB.
const maxTableSize = 64 << 20

// readTable reads one table file: anything but a regular file (a named
// pipe would block the read, /dev/zero would never end) is refused at
// once, and the read is bounded.
func readTable(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTableSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxTableSize {
		return nil, fmt.Errorf("larger than %d bytes: not an ACPI table", maxTableSize)
	}
	return b, nil
}
