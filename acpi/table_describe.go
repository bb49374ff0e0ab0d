package acpi

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/acpidiag/acpidiag/aml"
)

// DescribeOptions control DescribeTable.
type DescribeOptions struct {
	// Offsets prefixes every ASL line with the byte offset (within the
	// table) of the construct it shows.
	Offsets bool
}

// IsAML reports whether tables with this signature hold AML after the
// header (DSDT, SSDT and the obsolete PSDT).
func IsAML(signature string) bool {
	return signature == "DSDT" || signature == "SSDT" || signature == "PSDT"
}

// DescribeTable writes a human-readable description of one whole ACPI
// table: its header (signature, length, revision, whether the checksum is
// right, OEM ids, creator) as a comment, and, for AML tables, the body
// decoded by aml.Decode and printed by aml.FormatWith inside a
// DefinitionBlock, like "iasl -d" does.
//
// Malformed input returns a *FormatError whose Off is the byte offset in
// the table: header errors (nothing else is printed), a decoding error of
// the AML (wrapping the *aml.DecodeError; the header has been printed),
// or a checksum mismatch (wrapping ErrChecksum; everything is printed and
// the mismatch is also reported in the header comment). When the AML is
// malformed and the checksum wrong too, the decoding error is returned.
func DescribeTable(w io.Writer, table []byte, opt DescribeOptions) error {
	h, body, perr := Parse(table)
	if perr != nil && !errors.Is(perr, ErrChecksum) {
		return perr
	}
	if err := writeHeader(w, h, table, perr); err != nil {
		return err
	}
	if h.Signature == "FACS" || !IsAML(h.Signature) {
		if _, err := fmt.Fprintf(w, "/* %s: %d bytes of table data after the header (not AML) */\n", h.Signature, len(body)); err != nil {
			return err
		}
		return perr
	}
	root, err := aml.Decode(body)
	if err != nil {
		var de *aml.DecodeError
		if errors.As(err, &de) {
			msg := de.Msg
			if de.Op != "" {
				msg = de.Op + ": " + msg
			}
			return &FormatError{Off: int64(HeaderSize + de.Off), Msg: msg, Err: de}
		}
		return err
	}
	if _, err := fmt.Fprintf(w, "DefinitionBlock (\"\", %s, %d, %s, %s, 0x%08X)\n{\n",
		aslQuote(h.Signature), h.Revision, aslQuote(h.OEMID), aslQuote(h.OEMTableID), h.OEMRevision); err != nil {
		return err
	}
	if err := aml.FormatWith(w, root, aml.FormatOptions{Offsets: opt.Offsets, Base: HeaderSize, Indent: "    "}); err != nil {
		return err
	}
	if _, err := io.WriteString(w, "}\n"); err != nil {
		return err
	}
	return perr
}

func writeHeader(w io.Writer, h Header, table []byte, perr error) error {
	sum := "OK"
	if perr != nil {
		sum = fmt.Sprintf("BAD, should be 0x%02X", h.Checksum+Checksum(table))
	}
	rev := ""
	if h.Signature == "DSDT" && h.Revision < 2 {
		rev = " (revision 1: the OS runs all AML with 32-bit integers)"
	}
	_, err := fmt.Fprintf(w, `/*
 * Signature        %s
 * Length           0x%08X (%d)
 * Revision         0x%02X%s
 * Checksum         0x%02X (%s)
 * OEM ID           %s
 * OEM Table ID     %s
 * OEM Revision     0x%08X (%d)
 * Creator ID       %s
 * Creator Revision 0x%08X (%d)
 */
`, aslQuote(h.Signature), h.Length, h.Length, h.Revision, rev, h.Checksum, sum,
		aslQuote(h.OEMID), aslQuote(h.OEMTableID), h.OEMRevision, h.OEMRevision,
		aslQuote(h.CreatorID), h.CreatorRevision, h.CreatorRevision)
	return err
}

// aslQuote quotes s as an ASL string literal, escaping anything that is not
// printable ASCII (header ids come from untrusted files).
func aslQuote(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c >= 0x20 && c < 0x7F:
			b = append(b, c)
		default:
			b = append(b, `\x`...)
			b = strconv.AppendUint(b, uint64(c)>>4, 16)
			b = strconv.AppendUint(b, uint64(c)&0xF, 16)
		}
	}
	return string(append(b, '"'))
}
