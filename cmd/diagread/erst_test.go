package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// erstExpected reads the shared fixtures' expected.json: case → the panic
// lines of its records.
func erstExpected(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtures.Real(t), "erst", "expected.json"))
	require.NoError(t, err)
	var m map[string]struct {
		Records []struct {
			PanicLines []string `json:"panic_lines"`
		} `json:"records"`
	}
	require.NoError(t, json.Unmarshal(raw, &m))
	out := map[string][]string{}
	for name, c := range m {
		out[name] = []string{}
		for _, r := range c.Records {
			out[name] = append(out[name], r.PanicLines...)
		}
	}
	return out
}

func backing(t *testing.T, name string) string {
	return filepath.Join(fixtures.Real(t), "erst", name, "erst.backing")
}

func runErstCapture(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := runErst(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestRunErstText(t *testing.T) {
	for name, lines := range erstExpected(t) {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := runErstCapture(backing(t, name))
			require.Equal(t, 0, code, errOut)
			assert.Empty(t, errOut)
			assert.Contains(t, out, "ERST store ")
			for _, l := range lines {
				assert.Contains(t, out, l)
			}
			if len(lines) == 0 {
				assert.Contains(t, out, "0 records, 0 events")
			} else {
				assert.Contains(t, out, "--- log, oldest first ---")
				assert.Contains(t, out, "   panic: Kernel panic - not syncing: ")
			}
			code, sum, _ := runErstCapture("--summary", backing(t, name))
			require.Equal(t, 0, code)
			assert.NotContains(t, sum, "--- log")
			assert.Less(t, len(sum), 4096)
		})
	}
}

func TestRunErstJSON(t *testing.T) {
	for name, lines := range erstExpected(t) {
		t.Run(name, func(t *testing.T) {
			// Flags after the file name work too.
			code, out, errOut := runErstCapture(backing(t, name), "--json")
			require.Equal(t, 0, code, errOut)
			var rep struct {
				Header struct {
					RecordSize  uint32 `json:"record_size"`
					RecordCount uint32 `json:"record_count"`
				} `json:"header"`
				Records []struct {
					Kind      string `json:"kind"`
					FirstLine string `json:"first_line"`
					RecordID  string `json:"record_id"`
				} `json:"records"`
				Events []struct {
					Reason    string   `json:"reason"`
					PanicLine string   `json:"panic_line"`
					OopsLines []string `json:"oops_lines"`
					Parts     []int    `json:"parts"`
					Text      *string  `json:"text"`
				} `json:"events"`
				Errors  []json.RawMessage `json:"errors"`
				Summary struct {
					Panicked  bool   `json:"panicked"`
					PanicLine string `json:"panic_line"`
				} `json:"summary"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
			assert.Equal(t, uint32(8192), rep.Header.RecordSize)
			assert.Len(t, rep.Records, int(rep.Header.RecordCount))
			assert.Empty(t, rep.Errors)
			var got []string
			for _, e := range rep.Events {
				require.NotNil(t, e.Text)
				got = append(got, e.OopsLines...)
				if e.PanicLine != "" {
					got = append(got, e.PanicLine)
				}
			}
			for _, l := range lines {
				assert.Contains(t, got, l)
			}
			assert.Equal(t, len(lines) > 0, rep.Summary.Panicked)
			if rep.Summary.Panicked {
				assert.Equal(t, lines[len(lines)-1], rep.Summary.PanicLine, "newest panic line")
			}
		})
	}
}

func TestRunErstBadInput(t *testing.T) {
	code, _, errOut := runErstCapture()
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "usage: diagread erst")

	code, _, errOut = runErstCapture(filepath.Join(t.TempDir(), "nope"))
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "no such file")

	code, _, _ = runErstCapture("--bogus", "x")
	assert.Equal(t, 2, code)

	code, _, _ = runErstCapture("a", "b")
	assert.Equal(t, 2, code)

	// A real store with its magic damaged: bad header → 2, named field.
	b, err := os.ReadFile(backing(t, "q35_sysrq_none"))
	require.NoError(t, err)
	copy(b, "XXXXXXXX")
	p := filepath.Join(t.TempDir(), "bad.backing")
	require.NoError(t, os.WriteFile(p, b, 0o600))
	code, out, errOut := runErstCapture(p)
	assert.Equal(t, 2, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "magic at offset 0x0")

	code, _, _ = runErstCapture("-h")
	assert.Equal(t, 0, code)
}

// TestRunErstEscapes plants terminal escape sequences in a real record's
// text and checks they are printed escaped, and record errors are listed.
func TestRunErstEscapes(t *testing.T) {
	b, err := os.ReadFile(backing(t, "q35_sysrq_none"))
	require.NoError(t, err)
	// Slot 2's text starts at 2*8192+200 with "Panic#1 Part2\n<6>[ ..." —
	// overwrite some log bytes after the header line.
	copy(b[2*8192+200+20:], "\x1b]0;pwned\x07\x1b[2J")
	// Break slot 1's CPER signature.
	copy(b[8192:], "XPER")
	p := filepath.Join(t.TempDir(), "esc.backing")
	require.NoError(t, os.WriteFile(p, b, 0o600))
	code, out, _ := runErstCapture(p)
	require.Equal(t, 0, code)
	assert.NotContains(t, out, "\x1b")
	assert.NotContains(t, out, "\x07")
	assert.Contains(t, out, `\x1b]0;pwned\x07\x1b[2J`)
	assert.Contains(t, out, "error: erst: slot 1")
	assert.Contains(t, out, "cper signature")
	assert.Contains(t, out, "missing parts: [1]")
}

// TestDiagreadErstBinary builds the real diagread binary and runs
// "diagread erst" on every fixture.
func TestDiagreadErstBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := fixtures.BuildCommand(t, "diagread")
	for name, lines := range erstExpected(t) {
		cmd := exec.Command(bin, "erst", backing(t, name))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), "%s: %s", name, stderr.String())
		for _, l := range lines {
			assert.Contains(t, stdout.String(), l, name)
		}
		cmd = exec.Command(bin, "erst", "--json", backing(t, name))
		out, err := cmd.Output()
		require.NoError(t, err)
		assert.True(t, json.Valid(out), name)
		for _, l := range lines {
			assert.True(t, strings.Contains(string(out), l), "%s: JSON lacks %q", name, l)
		}
	}
	bad := exec.Command(bin, "erst", filepath.Join(t.TempDir(), "missing"))
	err := bad.Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 2, ee.ExitCode())
}

// TestErstPrintersEscapeOnce: a real store whose panic line holds a quote,
// an ESC byte and "café": the text printer escapes the ESC once and keeps
// the rest; the JSON printer gives the guest's text as it is.
func TestErstPrintersEscapeOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "erst")
	require.NoError(t, os.WriteFile(path, fixtures.HostileERST(t), 0o644))

	var out, errb bytes.Buffer
	require.Equal(t, 0, runErst([]string{path}, &out, &errb), errb.String())
	text := out.String()
	assert.Contains(t, text, "   panic: "+fixtures.HostileShown+"\n")
	assert.Contains(t, text, fixtures.HostileShown+"\n", "the log text too")
	assert.NotContains(t, text, "\x1b")
	assert.NotContains(t, text, `\x22`)
	assert.NotContains(t, text, `\x5c`)
	assert.NotContains(t, text, `caf\xc3`)

	out.Reset()
	require.Equal(t, 0, runErst([]string{"--json", path}, &out, &errb), errb.String())
	require.True(t, json.Valid(out.Bytes()))
	var m struct {
		Events []struct {
			PanicLine string `json:"panic_line"`
			Text      string `json:"text"`
		} `json:"events"`
		Summary struct {
			PanicLine string `json:"panic_line"`
		} `json:"summary"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &m))
	require.Len(t, m.Events, 1)
	assert.Equal(t, fixtures.HostileLine, m.Events[0].PanicLine)
	assert.Contains(t, m.Events[0].Text, fixtures.HostileLine)
	assert.Equal(t, fixtures.HostileLine, m.Summary.PanicLine)
}
