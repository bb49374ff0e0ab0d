package hostreader

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// expectedRecord mirrors one record of fixtures/erst/expected.json, written
// by the tool that produced the real fixtures.
type expectedRecord struct {
	Slot       int      `json:"slot"`
	RecordID   string   `json:"record_id"`
	Section    string   `json:"section"`
	FirstLine  string   `json:"first_line"`
	PanicLines []string `json:"panic_lines"`
	TextBytes  int      `json:"text_bytes"`
	Timestamp  int64    `json:"timestamp"`
}

type expectedCase struct {
	RecordCount int              `json:"record_count"`
	Records     []expectedRecord `json:"records"`
}

func loadExpected(t testing.TB) map[string]expectedCase {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtures.Real(t), "erst", "expected.json"))
	require.NoError(t, err)
	var m map[string]expectedCase
	require.NoError(t, json.Unmarshal(raw, &m))
	require.NotEmpty(t, m)
	return m
}

// erstCases returns case name → backing file path for every shared fixture.
func erstCases(t testing.TB) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(fixtures.Real(t), "erst", "*", "erst.backing"))
	require.NoError(t, err)
	require.NotEmpty(t, paths, "no ERST fixtures found")
	out := make(map[string]string)
	for _, p := range paths {
		out[filepath.Base(filepath.Dir(p))] = p
	}
	return out
}

func readCase(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures.Real(t), "erst", name, "erst.backing"))
	require.NoError(t, err)
	return b
}

func sectionKind(t testing.TB, section string) string {
	switch section {
	case "DMESG":
		return KindDmesg
	case "DMESG_Z":
		return KindDmesgZ
	case "MCE":
		return KindMCE
	}
	t.Fatalf("expected.json: unknown section %q", section)
	return ""
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func TestDecodeERSTFixtures(t *testing.T) {
	exp := loadExpected(t)
	cases := erstCases(t)
	require.Equal(t, len(exp), len(cases), "every fixture needs an expected.json entry and vice versa")
	for name, path := range cases {
		t.Run(name, func(t *testing.T) {
			want, ok := exp[name]
			require.True(t, ok, "no expected.json entry for %s", name)
			s, err := ReadERSTFile(path)
			require.NoError(t, err)
			assert.Empty(t, s.Errors)
			assert.Equal(t, uint64(ERSTMagic), s.Header.Magic)
			assert.Equal(t, uint32(want.RecordCount), s.Header.RecordCount)
			require.Len(t, s.Records, want.RecordCount)
			used := 0
			for _, sl := range s.Slots {
				if sl.Used {
					used++
				}
			}
			assert.Equal(t, want.RecordCount, used)
			for i, wr := range want.Records {
				r := s.Records[i]
				assert.Equal(t, wr.Slot, r.Slot, "record %d slot", i)
				id, err := strconv.ParseUint(strings.TrimPrefix(wr.RecordID, "0x"), 16, 64)
				require.NoError(t, err)
				assert.Equal(t, id, r.ID, "record %d id", i)
				assert.Equal(t, id, r.Header.RecordID)
				assert.Equal(t, sectionKind(t, wr.Section), r.Kind, "record %d kind", i)
				assert.Equal(t, wr.Section == "DMESG_Z", r.Compressed)
				assert.Equal(t, CreatorPstore, r.Creator)
				assert.Equal(t, wr.FirstLine, firstLine(r.Text), "record %d first line", i)
				assert.Equal(t, wr.TextBytes, len(r.Text), "record %d text length", i)
				assert.Equal(t, wr.Timestamp, r.Timestamp.Unix(), "record %d timestamp", i)
				wantLines := wr.PanicLines
				if wantLines == nil {
					wantLines = []string{}
				}
				got := CrashLines(r.Text)
				if got == nil {
					got = []string{}
				}
				assert.Equal(t, wantLines, got, "record %d panic lines", i)
				// The header line is parsed into Reason/Count/Part.
				assert.Equal(t, wr.FirstLine, r.Reason+"#"+strconv.Itoa(r.Count)+" Part"+strconv.Itoa(r.Part))
				assert.Equal(t, SeverityFatal, r.Header.ErrorSeverity)
				require.Len(t, r.Sections, 1)
				assert.Equal(t, r.StoredLength, int(r.Sections[0].Length))
			}
		})
	}
}

// TestEventsFixtures checks the reassembly against expected.json: one event
// per (boot, reason, count), parts joined oldest first, the panic line of
// the event found among its records' panic lines.
func TestEventsFixtures(t *testing.T) {
	exp := loadExpected(t)
	for name := range erstCases(t) {
		t.Run(name, func(t *testing.T) {
			want := exp[name]
			s, err := DecodeERST(readCase(t, name))
			require.NoError(t, err)
			type group struct {
				parts []int
				panic string
				oops  []string
			}
			groups := map[string]*group{}
			var order []string
			for _, wr := range want.Records {
				id, err := strconv.ParseUint(strings.TrimPrefix(wr.RecordID, "0x"), 16, 64)
				require.NoError(t, err)
				head, partStr, ok := strings.Cut(wr.FirstLine, " Part")
				require.True(t, ok)
				k := strconv.FormatUint(id>>32, 16) + "/" + head
				g := groups[k]
				if g == nil {
					g = &group{}
					groups[k] = g
					order = append(order, k)
				}
				p, err := strconv.Atoi(partStr)
				require.NoError(t, err)
				g.parts = append(g.parts, p)
				for _, l := range wr.PanicLines {
					if strings.HasPrefix(l, "Kernel panic") {
						if g.panic == "" {
							g.panic = l
						}
					} else if p == 1 {
						g.oops = append(g.oops, l)
					}
				}
			}
			evs := s.Events()
			require.Len(t, evs, len(groups))
			for i, e := range evs {
				g := groups[order[i]]
				require.NotNil(t, g)
				assert.Equal(t, order[i], strconv.FormatUint(e.Boot, 16)+"/"+e.Reason+"#"+strconv.Itoa(e.Count))
				sort.Sort(sort.Reverse(sort.IntSlice(g.parts)))
				var got []int
				for _, p := range e.Parts {
					got = append(got, p.Part)
				}
				assert.Equal(t, g.parts, got, "parts oldest (highest) first")
				assert.Empty(t, e.MissingParts)
				assert.Equal(t, g.panic, e.PanicLine)
				if len(g.oops) > 0 {
					assert.Equal(t, g.oops, e.OopsLines)
				}
				assert.False(t, e.Timestamp.IsZero())
				// Joined text: every part body, oldest first, no header lines.
				var sb strings.Builder
				for _, p := range e.Parts {
					sb.WriteString(p.Body())
				}
				assert.Equal(t, sb.String(), e.Text())
				assert.NotContains(t, e.Text(), e.Reason+"#"+strconv.Itoa(e.Count)+" Part")
				assertPartsInOrder(t, e.Parts)
			}
		})
	}
}

// assertPartsInOrder checks that where two parts meet in the joined text,
// the older part's last kernel timestamp is not after the newer part's
// first one: true only if the parts were joined oldest first. (Within a
// part the kernel clock can step back during early boot, when the TSC
// takes over, so only the seams are checked.)
func assertPartsInOrder(t *testing.T, parts []*Record) {
	t.Helper()
	for i := 0; i+1 < len(parts); i++ {
		older, newer := logTimes(parts[i].Body()), logTimes(parts[i+1].Body())
		require.NotEmpty(t, older)
		require.NotEmpty(t, newer)
		assert.LessOrEqual(t, older[len(older)-1], newer[0], "part %d must come before part %d", parts[i].Part, parts[i+1].Part)
	}
}

func logTimes(text string) []float64 {
	var out []float64
	for _, line := range strings.Split(text, "\n") {
		open := strings.IndexByte(line, '[')
		closeIdx := strings.IndexByte(line, ']')
		if open < 0 || closeIdx < open || open > 4 {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(line[open+1:closeIdx]), 64)
		if err == nil {
			out = append(out, v)
		}
	}
	return out
}

func TestEmptyStore(t *testing.T) {
	s, err := DecodeERST(readCase(t, "q35_clean_poweroff_empty_store"))
	require.NoError(t, err)
	assert.Empty(t, s.Records)
	assert.Empty(t, s.Errors)
	assert.Empty(t, s.Events())
	// 64 KiB, 8 KiB slots, slot 0 is the header: 7 usable slots.
	assert.Len(t, s.Slots, 7)
	for _, sl := range s.Slots {
		assert.False(t, sl.Used)
		assert.True(t, sl.InFile)
	}
}

func TestReadERSTFileErrors(t *testing.T) {
	_, err := ReadERSTFile(filepath.Join(t.TempDir(), "missing"))
	require.Error(t, err)
	assert.ErrorIs(t, err, os.ErrNotExist)

	p := filepath.Join(t.TempDir(), "zero")
	require.NoError(t, os.WriteFile(p, make([]byte, 65536), 0o600))
	_, err = ReadERSTFile(p)
	var fe *ERSTFormatError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "magic", fe.Field)
	assert.Contains(t, err.Error(), "never initialized")
	assert.Contains(t, err.Error(), p)
}

func BenchmarkDecodeERSTDeflate(b *testing.B) {
	data := readCase(b, "q35_two_panics_deflate")
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := DecodeERST(data)
		if err != nil || len(s.Records) != 6 {
			b.Fatalf("decode: %v", err)
		}
	}
}

func BenchmarkDecodeERSTPlain(b *testing.B) {
	data := readCase(b, "q35_oops_none")
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := DecodeERST(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEvents(b *testing.B) {
	s, err := DecodeERST(readCase(b, "q35_two_panics_deflate"))
	require.NoError(b, err)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if len(s.Events()) != 3 {
			b.Fatal("events")
		}
	}
}

func TestReadERSTFileTooLarge(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge")
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(MaxERSTFileSize+1)) // sparse: no disk used
	require.NoError(t, f.Close())
	_, err = ReadERSTFile(p)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "larger than")
}
