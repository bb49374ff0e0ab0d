package render

import (
	"fmt"
	"io"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/monitor"
)

// Artifacts writes one line per artifact of a diagnostics bundle (what
// `diagmon diag` and `diagmon demo` print), each prefixed by indent:
// diagnostic, file, size, duration and "ok" or "ERROR" with the escaped
// reason.
func Artifacts(w io.Writer, indent string, arts []monitor.Artifact) error {
	for _, a := range arts {
		status := "ok"
		if a.Error != "" {
			status = "ERROR " + hostreader.EscapeLog(a.Error)
		}
		if _, err := fmt.Fprintf(w, "%s%-14s %-20s %8d bytes %7.0f ms  %s\n", indent, a.Diagnostic, a.Name, a.Size, float64(a.Duration)/1e6, status); err != nil {
			return err
		}
	}
	return nil
}
