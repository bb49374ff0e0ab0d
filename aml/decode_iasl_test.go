package aml

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// padPath turns an ASL path ("\_SB.PCI0", "^FOO", "PCI0.S08") resolved
// against scope (a list of 4-character segments) into the list of
// segments of the absolute path. Scope lookups use no search rules: names
// are resolved the same way for iasl's output and for the decoded tree.
func padPath(scope []string, asl string) []string {
	var out []string
	switch {
	case strings.HasPrefix(asl, "\\"):
		asl = asl[1:]
	default:
		out = append(out, scope...)
		for strings.HasPrefix(asl, "^") {
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			asl = asl[1:]
		}
	}
	if asl == "" {
		return out
	}
	for _, s := range strings.Split(asl, ".") {
		out = append(out, (s + "___")[:4])
	}
	return out
}

var dslDecl = regexp.MustCompile(`^\s*(Scope|Device|Method|Name|ThermalZone|PowerResource|Processor) \(([^,)\s]+)`)

// iaslDecls runs "iasl -d" on table and returns "Kind \PATH" for every
// Device, Method and Name (and ThermalZone, PowerResource, Processor) it
// prints, with scopes tracked through the braces.
func iaslDecls(t *testing.T, iasl string, table []byte) []string {
	dir := t.TempDir()
	in := filepath.Join(dir, "t.aml")
	require.NoError(t, os.WriteFile(in, table, 0o644))
	cmd := exec.Command(iasl, "-d", in)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	f, err := os.Open(filepath.Join(dir, "t.dsl"))
	require.NoError(t, err)
	defer f.Close()

	var decls []string
	type frame struct{ scope []string }
	stack := []frame{{nil}}
	var pending []string // scope opened by the next "{"
	pendingSet := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "//"); i >= 0 {
			line = line[:i]
		}
		if i := strings.Index(line, "/*"); i >= 0 && strings.Contains(line[i:], "*/") {
			line = line[:i] + line[i+strings.Index(line[i:], "*/")+2:]
		}
		trim := strings.TrimSpace(line)
		if strings.HasPrefix(trim, "*") || strings.HasPrefix(trim, "/*") {
			continue
		}
		cur := stack[len(stack)-1].scope
		if m := dslDecl.FindStringSubmatch(line); m != nil {
			path := padPath(cur, m[2])
			if m[1] != "Scope" {
				decls = append(decls, m[1]+" \\"+strings.Join(path, "."))
			}
			if m[1] != "Name" {
				pending, pendingSet = path, true
			}
		}
		for _, c := range line {
			switch c {
			case '{':
				if pendingSet {
					stack = append(stack, frame{pending})
					pendingSet = false
				} else {
					stack = append(stack, frame{stack[len(stack)-1].scope})
				}
			case '}':
				require.Greater(t, len(stack), 1, "unbalanced braces in iasl output")
				stack = stack[:len(stack)-1]
			}
		}
	}
	require.NoError(t, sc.Err())
	require.Len(t, stack, 1, "unbalanced braces in iasl output")
	// The DefinitionBlock's own braces.
	sort.Strings(decls)
	return decls
}

// treeDecls lists the same declarations from a decoded tree.
func treeDecls(root *Node) []string {
	var decls []string
	var walk func(list []*Node, scope []string)
	walk = func(list []*Node, scope []string) {
		for _, n := range list {
			kind := ""
			switch n.Op {
			case ExtendedOp(DeviceOp):
				kind = "Device"
			case MethodOp:
				kind = "Method"
			case NameOp:
				kind = "Name"
			case ExtendedOp(ThermalZoneOp):
				kind = "ThermalZone"
			case ExtendedOp(PowerResOp):
				kind = "PowerResource"
			case ExtendedOp(ProcessorOp):
				kind = "Processor"
			}
			inner := scope
			if n.Name != nil && (kind != "" || n.Op == ScopeOp) {
				path := padPath(scope, n.Name.String())
				if kind != "" {
					decls = append(decls, kind+" \\"+strings.Join(path, "."))
				}
				if kind != "Name" {
					inner = path
				}
			}
			walk(n.Children, inner)
			for _, a := range n.Args {
				walk([]*Node{a}, inner)
			}
		}
	}
	walk(root.Children, nil)
	sort.Strings(decls)
	return decls
}

func TestDecodeMatchesIaslDeclarations(t *testing.T) {
	iasl := fixtures.RequireTool(t, "iasl")
	for p, b := range amlTables(t) {
		t.Run(filepath.Base(filepath.Dir(p))+"/"+filepath.Base(p), func(t *testing.T) {
			root, err := Decode(b[36:])
			require.NoError(t, err)
			want := iaslDecls(t, iasl, b)
			got := treeDecls(root)
			require.NotEmpty(t, want)
			assert.Equal(t, want, got)
		})
	}
}

func TestIaslDeclsSanity(t *testing.T) {
	iasl := fixtures.RequireTool(t, "iasl")
	b, err := os.ReadFile(filepath.Join(fixtures.Shared(t), "tables", "q35_seabios_default", "DSDT.dat"))
	require.NoError(t, err)
	want := iaslDecls(t, iasl, b)
	t.Logf("%d declarations", len(want))
	require.Greater(t, len(want), 100)
	for _, d := range []string{"Device \\_SB_.PCI0", "Method \\_SB_.PCI0._OSC", "Name \\_SB_.PCI0._HID", "Method \\_GPE._E01", "Device \\_SB_.PCI0.S00_", "Method \\DBUG"} {
		assert.Contains(t, want, d)
	}
	// A decoder that lost one Device (here: the tree without its last
	// top-level term) must not pass the comparison.
	root, err := Decode(b[36:])
	require.NoError(t, err)
	root.Children = root.Children[:len(root.Children)-1]
	assert.NotEqual(t, want, treeDecls(root))
}

var (
	dslComment = regexp.MustCompile(`/\*.*?\*/`)
	spaceParen = regexp.MustCompile(`\s+\)`)
	// iasl names offsets into resource templates (\X._Y00._INT) even
	// with -db; the printer prints the number.
	resourceTag = regexp.MustCompile(`\._Y[0-9A-F]{2}\.`)
)

// stmtLines returns the normalized one-line statements of ASL text: the
// comments removed, whitespace trimmed, lines with unbalanced parentheses
// (wrapped by iasl) and constructs the printer renders differently
// (resource templates, ToUUID, buffer and package bodies) left out.
func stmtLines(text string) map[string]int {
	out := map[string]int{}
	for _, l := range strings.Split(text, "\n") {
		if i := strings.Index(l, "//"); i >= 0 {
			l = l[:i]
		}
		l = dslComment.ReplaceAllString(l, "")
		l = spaceParen.ReplaceAllString(strings.TrimSpace(l), ")")
		l = strings.TrimSuffix(l, ",")
		if l == "" || l == "{" || l == "}" || strings.HasPrefix(l, "*") || strings.HasPrefix(l, ",") ||
			strings.Count(l, "(") != strings.Count(l, ")") || strings.Count(l, "(") == 0 {
			continue
		}
		skip := resourceTag.MatchString(l)
		for _, s := range []string{"ResourceTemplate", "ToUUID", "Buffer", "Package", "DefinitionBlock", "External", "Unicode"} {
			if strings.Contains(l, s) {
				skip = true
			}
		}
		if !skip {
			out[l]++
		}
	}
	return out
}

// TestFormatMatchesIaslLegacy compares the printed statements with
// "iasl -dl -db" (legacy, function-form ASL; buffers not turned into
// resource templates): every one-line statement iasl
// prints must be printed identically, as often. Wrong method argument
// counts, operand orders or names show up here.
func TestFormatMatchesIaslLegacy(t *testing.T) {
	iasl := fixtures.RequireTool(t, "iasl")
	for p, b := range amlTables(t) {
		t.Run(filepath.Base(filepath.Dir(p))+"/"+filepath.Base(p), func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "t.aml")
			require.NoError(t, os.WriteFile(in, b, 0o644))
			cmd := exec.Command(iasl, "-dl", "-db", in)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, string(out))
			dsl, err := os.ReadFile(filepath.Join(dir, "t.dsl"))
			require.NoError(t, err)
			want := stmtLines(string(dsl))

			root, err := Decode(b[36:])
			require.NoError(t, err)
			var sb strings.Builder
			require.NoError(t, Format(&sb, root))
			got := stmtLines(sb.String())

			total := 0
			for l, n := range want {
				total += n
				assert.GreaterOrEqual(t, got[l], n, "iasl prints %d times, we print %d times: %s", n, got[l], l)
			}
			t.Logf("%d statement lines compared", total)
			require.Greater(t, total, 10)
		})
	}
}
