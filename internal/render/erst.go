package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/acpidiag/acpidiag/hostreader"
)

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

// maxFirstLine bounds first_line: the whole text is in the event.
const maxFirstLine = 240

// firstLineOf returns the first line of s, at most maxFirstLine bytes (cut
// at a UTF-8 boundary).
func firstLineOf(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > maxFirstLine {
		cut := maxFirstLine
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// escapeWriter escapes guest text (EscapeLog) on its way to w; each Write
// must hold whole runes (Event.WriteText writes whole parts).
type escapeWriter struct{ w io.Writer }

func (e escapeWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(e.w, hostreader.EscapeLog(string(b))); err != nil {
		return 0, err
	}
	return len(b), nil
}

// erstEventReport is the JSON object of one event.
func erstEventReport(e *hostreader.Event, withText bool) erstEventJSON {
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
		text := e.Text()
		ej.Text = &text
	}
	return ej
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
	for k := range evs {
		e := &evs[k]
		if e.PanicLine != "" {
			out.Summary.Panicked = true
			out.Summary.PanicLine = e.PanicLine // the newest event's line wins
		}
		out.Events = append(out.Events, erstEventReport(e, withText))
	}
	for _, e := range s.Errors {
		out.Errors = append(out.Errors, erstErrorJSON{
			Slot: e.Slot, RecordID: hexID(e.ID), Offset: e.Off, Field: e.Field, Decoded: e.Decoded, Message: e.Error(),
		})
	}
	return out
}

// ERSTJSON writes the JSON report of an ERST store (what `diagread erst
// --json` prints; fields documented in docs/erst.md) of the store s read
// from path and its events evs, the log text of each event included when
// withText. The report is one indented object with its events
// encoded one at a time, so that only one event's text is ever held in
// its JSON form: the store's text budget bounds what is written, and the
// memory stays a small multiple of one event.
func ERSTJSON(w io.Writer, path string, s *hostreader.ERSTStore, evs []hostreader.Event, withText bool) error {
	rep := erstJSONReport(path, s, evs, false) // the summary; events follow one by one
	rep.Events = nil
	head, err := marshalIndent(rep, "")
	if err != nil {
		return err
	}
	// Guest strings are JSON strings, whose quotes are escaped: the key
	// below appears once, where the events go.
	const slot = "\n  \"events\": null,"
	i := bytes.Index(head, []byte(slot))
	if i < 0 {
		return fmt.Errorf("internal: no events key in the report")
	}
	if _, err := w.Write(head[:i]); err != nil {
		return err
	}
	if _, err := io.WriteString(w, "\n  \"events\": ["); err != nil {
		return err
	}
	for k := range evs {
		b, err := marshalIndent(erstEventReport(&evs[k], false), "    ")
		if err != nil {
			return err
		}
		sep := ",\n    "
		if k == 0 {
			sep = "\n    "
		}
		if _, err := io.WriteString(w, sep); err != nil {
			return err
		}
		if !withText {
			if _, err := w.Write(b); err != nil {
				return err
			}
			continue
		}
		// "text" is the last field: stream it, part by part, before the
		// object's closing brace.
		const closing = "\n    }"
		if !bytes.HasSuffix(b, []byte(closing)) {
			return fmt.Errorf("internal: unexpected event object")
		}
		if _, err := w.Write(b[:len(b)-len(closing)]); err != nil {
			return err
		}
		if _, err := io.WriteString(w, ",\n      \"text\": \""); err != nil {
			return err
		}
		if err := evs[k].WriteText(&jsonStringWriter{w: w}); err != nil {
			return err
		}
		if _, err := io.WriteString(w, "\""+closing); err != nil {
			return err
		}
	}
	end := "],"
	if len(evs) > 0 {
		end = "\n  ],"
	}
	if _, err := io.WriteString(w, end); err != nil {
		return err
	}
	_, err = w.Write(append(head[i+len(slot):], '\n'))
	return err
}

// jsonStringWriter writes what it is given as the inside of a JSON string
// (encoding/json's escaping, without HTML escaping). Each Write must hold
// whole runes (Event.WriteText writes whole parts).
type jsonStringWriter struct {
	w   io.Writer
	buf bytes.Buffer
}

func (j *jsonStringWriter) Write(p []byte) (int, error) {
	j.buf.Reset()
	enc := json.NewEncoder(&j.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(string(p)); err != nil {
		return 0, err
	}
	b := bytes.TrimSuffix(j.buf.Bytes(), []byte("\n"))
	if _, err := j.w.Write(b[1 : len(b)-1]); err != nil {
		return 0, err
	}
	return len(p), nil
}

// marshalIndent is json.MarshalIndent without HTML escaping ("<4>" stays
// readable; TextCost counts the escaped form anyway).
func marshalIndent(v any, prefix string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent(prefix, "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// ERSTText writes the text report of an ERST store (what `diagread erst`
// prints): the store, its errors, the records not decoded, and each event
// with its panic and oops lines and, when withText, its log streamed part
// by part. Guest text is escaped (hostreader.EscapeLine, EscapeLog).
func ERSTText(w io.Writer, path string, s *hostreader.ERSTStore, evs []hostreader.Event, withText bool) error {
	ew := &errWriter{w: w}
	w = ew
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
			// Streamed part by part: no copy of the whole log is built.
			fmt.Fprint(w, "--- log, oldest first ---\n")
			if len(e.Parts) == 0 || e.WriteText(escapeWriter{w}) != nil {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "--- end of event %d ---\n", i+1)
		}
	}
	return ew.err
}

// errWriter remembers the first write error and drops what follows.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}
