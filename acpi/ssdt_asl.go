package acpi

import (
	"fmt"
	"io"

	"github.com/acpidiag/acpidiag/aml"
)

// WriteASL writes a whole AML table (DSDT or SSDT, header included) as ASL:
// a DefinitionBlock line from the header, then the body decoded by
// aml.Decode and printed by aml.FormatWith. It is what "ssdtgen --asl"
// prints. Malformed tables give the *FormatError of Parse or the
// *aml.DecodeError of the body (its offset is relative to the body; add
// HeaderSize for the table offset).
func WriteASL(w io.Writer, table []byte) error {
	h, body, err := Parse(table)
	if err != nil {
		return err
	}
	root, err := aml.Decode(body)
	if err != nil {
		return fmt.Errorf("acpi: decoding %s %q: %w", h.Signature, h.OEMTableID, err)
	}
	if _, err := fmt.Fprintf(w, "DefinitionBlock (\"\", %q, %d, %q, %q, 0x%08X)\n{\n",
		h.Signature, h.Revision, h.OEMID, h.OEMTableID, h.OEMRevision); err != nil {
		return err
	}
	if err := aml.FormatWith(w, root, aml.FormatOptions{Indent: "    "}); err != nil {
		return err
	}
	_, err = io.WriteString(w, "}\n")
	return err
}
