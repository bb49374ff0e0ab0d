package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/monitor"
)

// cmdStatus prints the delivery state of every http sink's spool of the
// configuration (monitor.SpoolStatus): queued, retrying with the last
// error, delivered and dropped counts. The monitor need not run.
func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", stderr)
	cfg := fs.String("config", "", "configuration file (JSON)")
	asJSON := fs.Bool("json", false, "print JSON")
	if !parse(fs, args, stderr) {
		return exitUsage
	}
	if *cfg == "" {
		fmt.Fprintln(stderr, "diagmon status: --config is required")
		return exitUsage
	}
	c, err := monitor.LoadConfig(*cfg)
	if err != nil {
		fmt.Fprintf(stderr, "diagmon status: %v\n", err)
		return exitError
	}
	sts := monitor.SpoolStatus(&c)
	if *asJSON {
		b, _ := json.MarshalIndent(sts, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	} else if len(sts) == 0 {
		fmt.Fprintln(stdout, "no http sink configured")
	}
	code := exitOK
	for _, s := range sts {
		if s.Error != "" {
			code = exitError
		}
		if *asJSON {
			continue
		}
		if s.Error != "" {
			fmt.Fprintf(stdout, "%s: error: %s\n", s.Sink, s.Error)
			continue
		}
		st := s.Status
		fmt.Fprintf(stdout, "%s (spool %s): queued %d (%d bytes), retrying %d, delivered %d, dropped %d\n",
			s.Sink, st.Dir, st.Queued, st.QueuedBytes, st.Retrying, st.Delivered, st.Dropped)
		if st.LastError != "" {
			fmt.Fprintf(stdout, "  last error %s: %s\n", st.LastErrorTime.Format("2006-01-02 15:04:05Z"), hostreader.EscapeLog(st.LastError))
		}
		if st.LastDropped != "" {
			fmt.Fprintf(stdout, "  last dropped: %s\n", hostreader.EscapeLog(st.LastDropped))
		}
	}
	return code
}
