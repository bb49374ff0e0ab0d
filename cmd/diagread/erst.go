package main

// diagread erst: decode a QEMU acpi-erst backing file (panic logs written by
// the guest kernel's pstore) and print the dump events. All decoding is in
// package hostreader; this file only formats.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/acpidiag/acpidiag/hostreader"
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
	fs := flag.NewFlagSet("erst", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, erstUsage)
		fs.PrintDefaults()
	}
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
		out := erstJSONReport(path, s, evs, !*summary)
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "diagread erst: %v\n", err)
			return 2
		}
		return 0
	}
	printErstText(stdout, path, s, evs, !*summary)
	return 0
}

// JSON report. Field names are stable and documented in docs/erst.md.
type erstJSON struct {
	File      string           `json:"file"`
	Size      int64            `json:"size"`
	Header    erstHeaderJSON   `json:"header"`
	Slots     int              `json:"slots"`
	UsedSlots int              `json:"used_slots"`
	Records   []erstRecordJSON `json:"records"`
	Events    []erstEventJSON  `json:"events"`
	Errors    []erstErrorJSON  `json:"errors"`
	Summary   *erstSummaryJSON `json:"summary"`
}

type erstHeaderJSON struct {
	RecordSize    uint32 `json:"record_size"`
	StorageOffset uint32 `json:"storage_offset"`
	Version       string `json:"version"`
	RecordCount   uint32 `json:"record_count"`
}

type erstRecordJSON struct {
	Slot        int     `json:"slot"`
	Offset      int64   `json:"offset"`
	RecordID    string  `json:"record_id"`
	Timestamp   *string `json:"timestamp"`
	Creator     string  `json:"creator"`
	SectionType string  `json:"section_type"`
	Kind        string  `json:"kind"`
	Severity    string  `json:"severity"`
	Reason      string  `json:"reason"`
	Count       int     `json:"count"`
	Part        int     `json:"part"`
	Compressed  bool    `json:"compressed"`
	StoredBytes int     `json:"stored_bytes"`
	TextBytes   int     `json:"text_bytes"`
	FirstLine   string  `json:"first_line"`
}

type erstEventJSON struct {
	Reason       string   `json:"reason"`
	Count        int      `json:"count"`
	Boot         string   `json:"boot"`
	Timestamp    *string  `json:"timestamp"`
	Parts        []int    `json:"parts"`
	Slots        []int    `json:"slots"`
	MissingParts []int    `json:"missing_parts"`
	PanicLine    string   `json:"panic_line"`
	OopsLines    []string `json:"oops_lines"`
	Text         *string  `json:"text,omitempty"`
}

type erstErrorJSON struct {
	Slot     int    `json:"slot"`
	RecordID string `json:"record_id"`
	Offset   int64  `json:"offset"`
	Field    string `json:"field"`
	Decoded  bool   `json:"decoded"`
	Message  string `json:"message"`
}

type erstSummaryJSON struct {
	Panicked  bool   `json:"panicked"`
	PanicLine string `json:"panic_line"`
}

func hexID(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }

func jsonTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

func firstLineOf(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func erstJSONReport(path string, s *hostreader.ERSTStore, evs []hostreader.Event, withText bool) erstJSON {
	out := erstJSON{
		File: path,
		Size: s.Size,
		Header: erstHeaderJSON{
			RecordSize:    s.Header.RecordSize,
			StorageOffset: s.Header.StorageOffset,
			Version:       fmt.Sprintf("%#04x", s.Header.Version),
			RecordCount:   s.Header.RecordCount,
		},
		Slots:   len(s.Slots),
		Records: []erstRecordJSON{},
		Events:  []erstEventJSON{},
		Errors:  []erstErrorJSON{},
		Summary: &erstSummaryJSON{},
	}
	for _, sl := range s.Slots {
		if sl.Used {
			out.UsedSlots++
		}
	}
	for i := range s.Records {
		r := &s.Records[i]
		out.Records = append(out.Records, erstRecordJSON{
			Slot: r.Slot, Offset: r.Offset, RecordID: hexID(r.ID), Timestamp: jsonTime(r.Timestamp),
			Creator: strings.ToLower(r.Creator.String()), SectionType: strings.ToLower(r.SectionType.String()),
			Kind: r.Kind, Severity: r.Header.ErrorSeverity.String(), Reason: r.Reason, Count: r.Count, Part: r.Part,
			Compressed: r.Compressed, StoredBytes: r.StoredLength, TextBytes: len(r.Text), FirstLine: firstLineOf(r.Text),
		})
	}
	for _, e := range evs {
		ej := erstEventJSON{
			Reason: e.Reason, Count: e.Count, Boot: hexID(e.Boot), Timestamp: jsonTime(e.Timestamp),
			Parts: []int{}, Slots: []int{}, MissingParts: []int{}, PanicLine: e.PanicLine, OopsLines: []string{},
		}
		for _, p := range e.Parts {
			ej.Parts = append(ej.Parts, p.Part)
			ej.Slots = append(ej.Slots, p.Slot)
		}
		ej.MissingParts = append(ej.MissingParts, e.MissingParts...)
		ej.OopsLines = append(ej.OopsLines, e.OopsLines...)
		if withText {
			text := e.Text
			ej.Text = &text
		}
		if e.PanicLine != "" {
			out.Summary.Panicked = true
			out.Summary.PanicLine = e.PanicLine // the newest event's line wins
		}
		out.Events = append(out.Events, ej)
	}
	for _, e := range s.Errors {
		out.Errors = append(out.Errors, erstErrorJSON{
			Slot: e.Slot, RecordID: hexID(e.ID), Offset: e.Off, Field: e.Field, Decoded: e.Decoded, Message: e.Error(),
		})
	}
	return out
}

func printErstText(w io.Writer, path string, s *hostreader.ERSTStore, evs []hostreader.Event, withText bool) {
	esc := hostreader.EscapeLine // one-line fields; the log text keeps its lines (EscapeLog)
	used := 0
	for _, sl := range s.Slots {
		if sl.Used {
			used++
		}
	}
	fmt.Fprintf(w, "ERST store %s: %d bytes, record_size %d, %d slots (%d used), %d records, %d events\n",
		esc(path), s.Size, s.Header.RecordSize, len(s.Slots), used, len(s.Records), len(evs))
	for _, e := range s.Errors {
		fmt.Fprintf(w, "error: %s\n", esc(e.Error()))
	}
	for i := range s.Records {
		r := &s.Records[i]
		if r.Kind == hostreader.KindDmesg || r.Kind == hostreader.KindDmesgZ {
			continue
		}
		fmt.Fprintf(w, "record: slot %d id %s kind %s creator %s section %s severity %s (%d bytes, not decoded)\n",
			r.Slot, hexID(r.ID), r.Kind, strings.ToLower(r.Creator.String()), strings.ToLower(r.SectionType.String()),
			r.Header.ErrorSeverity, r.StoredLength)
	}
	for i, e := range evs {
		name := e.Reason + "#" + strconv.Itoa(e.Count)
		if e.Reason == "" {
			name = "dmesg (no pstore header)"
		}
		ts := "unknown time"
		if !e.Timestamp.IsZero() {
			ts = e.Timestamp.UTC().Format(time.RFC3339)
		}
		var parts []string
		for _, p := range e.Parts {
			parts = append(parts, fmt.Sprintf("Part%d (slot %d)", p.Part, p.Slot))
		}
		fmt.Fprintf(w, "\n== event %d: %s, %s, boot %s\n", i+1, esc(name), ts, hexID(e.Boot))
		fmt.Fprintf(w, "   parts: %s\n", strings.Join(parts, ", "))
		if len(e.MissingParts) > 0 {
			fmt.Fprintf(w, "   missing parts: %v\n", e.MissingParts)
		}
		if e.PanicLine != "" {
			fmt.Fprintf(w, "   panic: %s\n", esc(e.PanicLine))
		}
		for _, l := range e.OopsLines {
			fmt.Fprintf(w, "   oops:  %s\n", esc(l))
		}
		if withText {
			fmt.Fprintf(w, "--- log, oldest first ---\n%s", hostreader.EscapeLog(e.Text))
			if !strings.HasSuffix(e.Text, "\n") {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "--- end of event %d ---\n", i+1)
		}
	}
}
