package hostreader

// Linux pstore dmesg records: decompression, the "<Reason>#<N> Part<M>"
// header line (fs/pstore/platform.c pstore_dump), reassembly of multi-part
// dumps into events, and extraction of the panic/oops lines.

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// decoder carries per-DecodeERST state: a reusable inflater and scratch
// buffer, and the remaining decompression budget.
type decoder struct {
	br     bytes.Reader
	fr     io.ReadCloser
	buf    []byte
	budget int
}

func newDecoder() *decoder { return &decoder{budget: MaxStoreText} }

// inflate decompresses a raw deflate stream (pstore compresses with the
// kernel's "deflate" crypto/zlib code using negative window bits, i.e. no
// zlib header) into at most MaxRecordText bytes, and spends the text's
// cost from the store's budget.
func (d *decoder) inflate(comp []byte) (string, error) {
	d.br.Reset(comp)
	if d.fr == nil {
		d.fr = flate.NewReader(&d.br)
	} else if err := d.fr.(flate.Resetter).Reset(&d.br, nil); err != nil {
		return "", err
	}
	// Every byte costs at least 1: a text longer than the budget left
	// cannot fit, so inflating stops there (memory stays bounded).
	limit := MaxRecordText
	if d.budget < limit {
		limit = d.budget
	}
	over := func() error {
		if limit < MaxRecordText {
			return d.overBudget(limit+1, "more than ")
		}
		return fmt.Errorf("inflates to more than %d bytes (MaxRecordText): %w", MaxRecordText, ErrTextTooLarge)
	}
	buf := d.buf[:0]
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				return "", over()
			}
			n := 2 * cap(buf)
			if n < 32<<10 {
				n = 32 << 10
			}
			if n > limit+1 {
				n = limit + 1
			}
			nb := make([]byte, len(buf), n)
			copy(nb, buf)
			buf = nb
		}
		n, err := d.fr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return "", over()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if err == io.ErrUnexpectedEOF {
				return "", fmt.Errorf("deflate stream truncated after %d bytes of text: %w", len(buf), err)
			}
			return "", err
		}
	}
	d.buf = buf
	if err := d.spend(buf); err != nil {
		return "", err
	}
	return string(buf), nil
}

// spend takes the escaped size of text from the store's budget, or says
// why it does not fit.
func (d *decoder) spend(text []byte) error {
	c := TextCost(text)
	if c > d.budget {
		return d.overBudget(c, "")
	}
	d.budget -= c
	return nil
}

func (d *decoder) overBudget(cost int, atLeast string) error {
	return fmt.Errorf("the record's text needs %s%d bytes once escaped, more than the %d left of the store's text budget (MaxStoreText, %d bytes counted after escaping): %w",
		atLeast, cost, d.budget, MaxStoreText, ErrTextTooLarge)
}

// TextCost returns the size guest text can take once escaped for
// printing: each byte counts as much as its escaped form takes in the
// larger of the text output (EscapeLog) and a JSON string: 1 for a
// printable ASCII byte, 2 for newline, tab, backslash and double quote, 6
// for any other control byte and for <, > and & (\u0000, \u003c), 1 for
// each byte of a printable UTF-8 rune, 6 for each byte of invalid UTF-8 or
// of a non-printable rune. It is the unit of MaxStoreText.
func TextCost(text []byte) int {
	n := 0
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			n += int(asciiCost[c])
			i++
			continue
		}
		r, size := utf8.DecodeRune(text[i:])
		if r == utf8.RuneError || !unicode.IsPrint(r) || r == '\u2028' || r == '\u2029' {
			n += 6 * size
		} else {
			n += size
		}
		i += size
	}
	return n
}

// asciiCost is TextCost of each ASCII byte.
var asciiCost = func() (t [utf8.RuneSelf]uint8) {
	for c := range t {
		switch {
		case c == '\\' || c == '"' || c == '\n' || c == '\t':
			t[c] = 2
		case c == '<' || c == '>' || c == '&' || c < 0x20:
			t[c] = 6
		case c == 0x7f:
			t[c] = 4
		default:
			t[c] = 1
		}
	}
	return t
}()

// parsePstoreHeader parses the first line of a pstore dmesg record,
// written by pstore_dump as snprintf("%s#%d Part%u\n", why, oopscount, part).
// It returns zero values when the line does not have that form.
func parsePstoreHeader(text string) (reason string, count, part int) {
	line := text
	if len(line) > 64 {
		line = line[:64]
	}
	nl := strings.IndexByte(line, '\n')
	if nl < 0 {
		if len(text) > len(line) {
			return "", 0, 0
		}
	} else {
		line = line[:nl]
	}
	hash := strings.IndexByte(line, '#')
	if hash <= 0 || hash > 32 {
		return "", 0, 0
	}
	why := line[:hash]
	for i := 0; i < len(why); i++ {
		if c := why[i]; c < 0x21 || c > 0x7e {
			return "", 0, 0
		}
	}
	rest := line[hash+1:]
	sp := strings.Index(rest, " Part")
	if sp <= 0 {
		return "", 0, 0
	}
	c, ok := parseInt(rest[:sp], true)
	if !ok {
		return "", 0, 0
	}
	p, ok := parseInt(rest[sp+len(" Part"):], false)
	if !ok {
		return "", 0, 0
	}
	return why, c, p
}

// parseInt parses a short decimal number (at most 9 digits, so it never
// overflows an int).
func parseInt(s string, signed bool) (int, bool) {
	neg := false
	if signed && strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	}
	if len(s) == 0 || len(s) > 9 {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		v = v*10 + int(s[i]-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

// Body returns the record's log text without the pstore header line.
func (r *Record) Body() string {
	if r.Reason == "" {
		return r.Text
	}
	if nl := strings.IndexByte(r.Text, '\n'); nl >= 0 {
		return r.Text[nl+1:]
	}
	return ""
}

// Event is one kernel log dump (one call of pstore_dump): all parts with the
// same reason and counter written by the same boot, reassembled.
type Event struct {
	// Reason is "Panic", "Oops", "Emergency", ... ("" for a dmesg record
	// without a pstore header line; such a record is an event of its own).
	Reason string
	// Count is the kernel's dump counter (the N of "Panic#N").
	Count int
	// Boot identifies the boot that wrote the parts: the boot-time part of
	// the record ids (Linux cper_next_record_id seeds the id counter with
	// the boot's wall-clock seconds << 32, or 1<<63 | seconds << 24 after
	// 2038).
	Boot uint64
	// Timestamp is the earliest valid timestamp of the parts.
	Timestamp time.Time
	// Parts are the records, oldest log chunk first (highest Part first).
	Parts []*Record
	// MissingParts lists part numbers absent between 1 and the highest
	// part present (the store was full, or records were erased). At most
	// 16 are listed.
	MissingParts []int
	// PanicLine is the first "Kernel panic - not syncing: ..." line, with
	// the "<level>[time]" prefix removed ("" if none).
	PanicLine string
	// OopsLines are the oops/BUG lines (see CrashLines), prefix removed,
	// in log order.
	OopsLines []string
}

// bootKey extracts the boot-time part of a Linux CPER record id
// (drivers/firmware/efi/cper.c cper_next_record_id).
func bootKey(id uint64) uint64 {
	if id&(1<<63) != 0 {
		return id >> 24
	}
	return id >> 32
}

// Events groups the store's dmesg records into dump events, ordered by
// record id (oldest first). Records of other kinds are not events.
func (s *ERSTStore) Events() []Event {
	type key struct {
		boot   uint64
		reason string
		count  int
	}
	idx := make(map[key]int)
	var evs []Event
	minID := []uint64{}
	for i := range s.Records {
		r := &s.Records[i]
		if r.Kind != KindDmesg && r.Kind != KindDmesgZ {
			continue
		}
		k := key{bootKey(r.ID), r.Reason, r.Count}
		j, ok := idx[k]
		if !ok || r.Reason == "" {
			j = len(evs)
			evs = append(evs, Event{Reason: r.Reason, Count: r.Count, Boot: k.boot})
			minID = append(minID, r.ID)
			if r.Reason != "" {
				idx[k] = j
			}
		}
		evs[j].Parts = append(evs[j].Parts, r)
		if r.ID < minID[j] {
			minID[j] = r.ID
		}
	}
	order := make([]int, len(evs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return minID[order[a]] < minID[order[b]] })
	out := make([]Event, 0, len(evs))
	for _, j := range order {
		e := evs[j]
		e.finish()
		out = append(out, e)
	}
	return out
}

func (e *Event) finish() {
	sort.SliceStable(e.Parts, func(a, b int) bool { return e.Parts[a].Part > e.Parts[b].Part })
	for _, p := range e.Parts {
		if !p.Timestamp.IsZero() && (e.Timestamp.IsZero() || p.Timestamp.Before(e.Timestamp)) {
			e.Timestamp = p.Timestamp
		}
	}
	if e.Reason != "" && len(e.Parts) > 0 {
		// Parts are sorted high to low: walk up from 1 looking for gaps.
		want := 1
		for i := len(e.Parts) - 1; i >= 0 && len(e.MissingParts) < 16; i-- {
			p := e.Parts[i].Part
			for want < p && len(e.MissingParts) < 16 {
				e.MissingParts = append(e.MissingParts, want)
				want++
			}
			if p >= want {
				want = p + 1
			}
		}
	}
	// Each part's body ends a line (Text adds the newline), so no line
	// spans two parts: the crash lines are found part by part.
	for _, p := range e.Parts {
		for _, l := range CrashLines(p.Body()) {
			if strings.HasPrefix(l, panicPrefix) {
				if e.PanicLine == "" {
					e.PanicLine = l
				}
				continue
			}
			e.OopsLines = append(e.OopsLines, l)
		}
	}
}

// Text returns the reassembled log, oldest line first, header lines
// removed, each part ending with a newline. It is raw guest data: escape
// it before printing. The text lives in the records (Parts); an event
// holds no copy of it: Text builds the string when called (an event of one
// part that ends with a newline returns that part's text without
// copying), and WriteText writes it without building it.
func (e *Event) Text() string {
	if len(e.Parts) == 1 {
		if b := e.Parts[0].Body(); b == "" || b[len(b)-1] == '\n' {
			return b
		}
	}
	var sb strings.Builder
	n := 0
	for _, p := range e.Parts {
		n += len(p.Text) + 1
	}
	sb.Grow(n)
	_ = e.WriteText(&sb)
	return sb.String()
}

// WriteText writes what Text returns to w, one part at a time (each Write
// holds whole lines of one part).
func (e *Event) WriteText(w io.Writer) error {
	for _, p := range e.Parts {
		body := p.Body()
		if body == "" {
			continue
		}
		if _, err := io.WriteString(w, body); err != nil {
			return err
		}
		if body[len(body)-1] != '\n' {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
	}
	return nil
}

const panicPrefix = "Kernel panic - not syncing"

// crashPrefixes start the lines that say why a kernel died or oopsed
// (messages of kernel/panic.c panic, arch/x86/kernel/dumpstack.c __die,
// arch/x86/mm/fault.c, lib/bug.c, kernel/watchdog.c, arm64 die()).
var crashPrefixes = [...]string{
	panicPrefix,
	"BUG: ",
	"Oops: ",
	"Oops - ",
	"kernel BUG at ",
	"general protection fault",
	"Unable to handle kernel ",
	"Internal error: ",
	"watchdog: BUG: ",
	"Watchdog detected hard LOCKUP",
}

// CrashLines returns, in order, the lines of a kernel log that say why the
// kernel panicked or oopsed ("Kernel panic - not syncing: ...", "BUG: ...",
// "Oops: ...", "kernel BUG at ...", "general protection fault ...", ...),
// each with its "<level>[time]" prefix removed (StripLogPrefix).
func CrashLines(text string) []string {
	var out []string
	for len(text) > 0 {
		line := text
		if nl := strings.IndexByte(text, '\n'); nl >= 0 {
			line, text = text[:nl], text[nl+1:]
		} else {
			text = ""
		}
		l := StripLogPrefix(line)
		for _, p := range crashPrefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

// StripLogPrefix removes the kmsg prefix of one log line: an optional
// "<level>" (as pstore's kmsg_dump_get_buffer writes with syslog=true),
// an optional "[seconds.micros]" timestamp and an optional "[T<pid>]" or
// "[C<cpu>]" caller id, and the single space after them.
func StripLogPrefix(line string) string {
	s := line
	if len(s) > 2 && s[0] == '<' {
		if end := strings.IndexByte(s[:min(len(s), 6)], '>'); end > 1 && allDigits(s[1:end]) {
			s = s[end+1:]
		}
	}
	for k := 0; k < 2 && len(s) > 0 && s[0] == '['; k++ {
		end := strings.IndexByte(s[:min(len(s), 24)], ']')
		if end < 0 {
			break
		}
		inner := strings.TrimLeft(s[1:end], " ")
		if !isTimestamp(inner) && !isCaller(inner) {
			break
		}
		s = s[end+1:]
	}
	if len(s) < len(line) && strings.HasPrefix(s, " ") {
		s = s[1:]
	}
	return s
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isTimestamp(s string) bool {
	dot := strings.IndexByte(s, '.')
	return dot > 0 && allDigits(s[:dot]) && allDigits(s[dot+1:])
}

func isCaller(s string) bool {
	return len(s) > 1 && (s[0] == 'T' || s[0] == 'C') && allDigits(s[1:])
}

// EscapeLog makes guest text safe to print on a terminal: newlines and tabs
// are kept, a backslash becomes `\\`, every other control byte, DEL, byte of
// invalid UTF-8 and non-printable rune is written as \xNN per byte.
// Printable UTF-8 is kept as is.
func EscapeLog(s string) string { return escapeText(s, true) }

// EscapeLine is EscapeLog for text printed on one line: newlines and tabs
// are written as \x0a and \x09 too. Printers call it (or EscapeLog) once
// on the guest's raw text; library values keep the raw text.
func EscapeLine(s string) string { return escapeText(s, false) }

func escapeText(s string, keepNL bool) string {
	kept := func(c byte) bool { return keepNL && (c == '\n' || c == '\t') }
	clean := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || c == '\\' || c == 0x7f || (c < 0x20 && !kept(c)) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hexd = "0123456789abcdef"
	var sb strings.Builder
	sb.Grow(len(s) + len(s)/8)
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x80 {
			switch {
			case c == '\\':
				sb.WriteString(`\\`)
			case kept(c) || (c >= 0x20 && c < 0x7f):
				sb.WriteByte(c)
			default:
				sb.WriteString(`\x`)
				sb.WriteByte(hexd[c>>4])
				sb.WriteByte(hexd[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			for k := 0; k < size; k++ {
				b := s[i+k]
				sb.WriteString(`\x`)
				sb.WriteByte(hexd[b>>4])
				sb.WriteByte(hexd[b&0xf])
			}
		} else {
			sb.WriteString(s[i : i+size])
		}
		i += size
	}
	return sb.String()
}
