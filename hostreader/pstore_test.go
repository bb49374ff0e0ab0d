package hostreader

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePstoreHeader(t *testing.T) {
	tests := []struct {
		text   string
		reason string
		count  int
		part   int
	}{
		{"Panic#1 Part1\n<0>[ 1.0] x\n", "Panic", 1, 1},
		{"Oops#12 Part3\nrest", "Oops", 12, 3},
		{"Emergency#2 Part1", "Emergency", 2, 1}, // no newline, whole text
		{"Panic#-1 Part1\n", "Panic", -1, 1},
		{"Panic#1 Part1x\n", "", 0, 0},
		{"Panic#1 Part\n", "", 0, 0},
		{"Panic#1Part1\n", "", 0, 0},
		{"#1 Part1\n", "", 0, 0},
		{"Pa nic#1 Part1\n", "", 0, 0},
		{"Pan\x1bic#1 Part1\n", "", 0, 0},
		{"Panic#1234567890 Part1\n", "", 0, 0}, // too many digits
		{"Panic#1 Part99999999999\n", "", 0, 0},
		{"<6>[    0.000000] Linux version\n", "", 0, 0},
		{"", "", 0, 0},
		{"Panic#1 Part1" + strings.Repeat("x", 100), "", 0, 0},
	}
	for _, tc := range tests {
		r, c, p := parsePstoreHeader(tc.text)
		assert.Equal(t, tc.reason, r, "%q", tc.text)
		assert.Equal(t, tc.count, c, "%q", tc.text)
		assert.Equal(t, tc.part, p, "%q", tc.text)
	}
}

func TestStripLogPrefix(t *testing.T) {
	tests := map[string]string{
		"<0>[   14.128854] Kernel panic - not syncing: sysrq triggered crash": "Kernel panic - not syncing: sysrq triggered crash",
		"<4>[   14.129869] Call Trace:":                                       "Call Trace:",
		"<4>[   14.131883]  panic+0x118/0x2f4":                                " panic+0x118/0x2f4",
		"[    1.000000] no level":                                             "no level",
		"<6>no time":                                                          "no time",
		"<6>[    1.0][    T1] caller id":                                      "caller id",
		"<6>[    1.0][  C0] cpu caller id":                                    "cpu caller id",
		"Kernel panic - not syncing: x":                                       "Kernel panic - not syncing: x",
		"<abc>[1.0] not a level":                                              "<abc>[1.0] not a level",
		"[not a time] x":                                                      "[not a time] x",
		"<6>[1.0":                                                             "[1.0",
		"":                                                                    "",
		"<":                                                                   "<",
		"<1>":                                                                 "",
	}
	for in, want := range tests {
		assert.Equal(t, want, StripLogPrefix(in), "%q", in)
	}
}

func TestCrashLines(t *testing.T) {
	text := "<6>[ 1.0] boot\n" +
		"<1>[ 2.0] BUG: kernel NULL pointer dereference, address: 0000000000000000\n" +
		"<1>[ 2.1] #PF: error_code(0x0002) - not-present page\n" +
		"<4>[ 2.2] Oops: 0002 [#1] PREEMPT SMP NOPTI\n" +
		"<4>[ 2.3] general protection fault, probably for non-canonical address\n" +
		"<0>[ 2.4] kernel BUG at mm/slub.c:123!\n" +
		"<0>[ 2.5] Kernel panic - not syncing: Fatal exception" // no final newline
	assert.Equal(t, []string{
		"BUG: kernel NULL pointer dereference, address: 0000000000000000",
		"Oops: 0002 [#1] PREEMPT SMP NOPTI",
		"general protection fault, probably for non-canonical address",
		"kernel BUG at mm/slub.c:123!",
		"Kernel panic - not syncing: Fatal exception",
	}, CrashLines(text))
	assert.Empty(t, CrashLines("<6>[ 1.0] all fine\n<6>[ 1.1] DEBUG: nothing\n"))
}

func TestEscapeLog(t *testing.T) {
	tests := map[string]string{
		"plain text\n\tindented": "plain text\n\tindented",
		"esc \x1b[2J clear":      `esc \x1b[2J clear`,
		"bell\a nul\x00 del\x7f": `bell\x07 nul\x00 del\x7f`,
		`back\slash`:             `back\\slash`,
		"cr\r":                   `cr\x0d`,
		"utf8 héllo ✓":           "utf8 héllo ✓",
		"bad \xff\xfe utf8":      `bad \xff\xfe utf8`,
		"bidi \u202e override":   `bidi \xe2\x80\xae override`,
		"c1 \u009b csi":          `c1 \xc2\x9b csi`,
		"truncated \xe2\x80":     `truncated \xe2\x80`,
		"":                       "",
	}
	for in, want := range tests {
		assert.Equal(t, want, EscapeLog(in), "%q", in)
	}
}

// rec builds a dmesg record for the Events tests.
func rec(slot int, id uint64, text string) Record {
	r := Record{Slot: slot, ID: id, Kind: KindDmesg, Text: text, Timestamp: time.Unix(int64(1000+slot), 0)}
	r.Reason, r.Count, r.Part = parsePstoreHeader(text)
	return r
}

func TestEventsSynthetic(t *testing.T) {
	const boot1, boot2 = uint64(0x60000000) << 32, uint64(0x60000100) << 32
	s := &ERSTStore{Records: []Record{
		// Boot 2 (newer) stored first, parts out of order, Part2 missing.
		rec(1, boot2|4, "Panic#1 Part3\n<0>[ 1.0] c\n"),
		rec(2, boot2|3, "Panic#1 Part1\n<0>[ 3.0] Kernel panic - not syncing: two\n"),
		// Boot 1: same reason and count, a different dump.
		rec(3, boot1|2, "Panic#1 Part2\n<6>[ 1.0] a\n"),
		rec(4, boot1|1, "Panic#1 Part1\n<0>[ 2.0] Kernel panic - not syncing: one"),
		// A dmesg record with no header line is an event of its own.
		rec(5, boot1|7, "no header\n"),
		rec(6, boot1|8, "no header either\n"),
		// Not dmesg: no event.
		{Slot: 7, ID: boot1 | 9, Kind: KindMCE},
	}}
	evs := s.Events()
	require.Len(t, evs, 4)
	assert.Equal(t, "Panic", evs[0].Reason)
	assert.Equal(t, boot1>>32, evs[0].Boot)
	assert.Equal(t, "<6>[ 1.0] a\n<0>[ 2.0] Kernel panic - not syncing: one\n", evs[0].Text())
	assert.Equal(t, "Kernel panic - not syncing: one", evs[0].PanicLine)
	assert.Empty(t, evs[0].MissingParts)
	assert.Equal(t, time.Unix(1003, 0), evs[0].Timestamp)

	assert.Equal(t, "", evs[1].Reason)
	assert.Equal(t, "no header\n", evs[1].Text())
	assert.Equal(t, "no header either\n", evs[2].Text())

	assert.Equal(t, boot2>>32, evs[3].Boot)
	assert.Equal(t, []int{3, 1}, []int{evs[3].Parts[0].Part, evs[3].Parts[1].Part})
	assert.Equal(t, []int{2}, evs[3].MissingParts)
	assert.Equal(t, "<0>[ 1.0] c\n<0>[ 3.0] Kernel panic - not syncing: two\n", evs[3].Text())
	// Events does not reorder the store's records.
	assert.Equal(t, 1, s.Records[0].Slot)
}

func TestBootKey(t *testing.T) {
	assert.Equal(t, uint64(0x6b02637a), bootKey(0x6b02637a00000001))
	// After 2038 Linux uses 1<<63 | seconds<<24.
	assert.Equal(t, (uint64(1)<<63|uint64(0x80000010)<<24)>>24, bootKey(1<<63|0x80000010<<24|5))
}

func TestMissingPartsBounded(t *testing.T) {
	s := &ERSTStore{Records: []Record{rec(1, 1, "Panic#1 Part999999999\nx\n")}}
	evs := s.Events()
	require.Len(t, evs, 1)
	assert.Len(t, evs[0].MissingParts, 16)
}
