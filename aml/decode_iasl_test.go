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
func treeDecls(root Node) []string {
	var decls []string
	var walk func(list []Node, scope []string)
	walk = func(list []Node, scope []string) {
		for _, n := range list {
			kind := ""
			switch n.Op() {
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
			if n.Name() != nil && (kind != "" || n.Op() == ScopeOp) {
				path := padPath(scope, n.Name().String())
				if kind != "" {
					decls = append(decls, kind+" \\"+strings.Join(path, "."))
				}
				if kind != "Name" {
					inner = path
				}
			}
			walk(n.Children(), inner)
			for _, a := range n.Args() {
				walk([]Node{a}, inner)
			}
		}
	}
	walk(root.Children(), nil)
	sort.Strings(decls)
	return decls
}

// exoticASL exercises constructs QEMU's tables do not use: Processor,
// PowerResource, ThermalZone, IndexField, BankField, extended AccessAs,
// Connection, DataTableRegion, VarPackage, Match, Mid, Load/Unload,
// LoadTable, Fatal, BreakPoint, ElseIf, External method calls and a call to
// a method declared later in the table.
const exoticASL = `DefinitionBlock ("", "SSDT", 2, "ACPIDG", "EXOTIC", 1)
{
    External (\_SB.EXT1, MethodObj)
    External (\_SB.EXT3, MethodObj)
    External (\_SB.PCI0, DeviceObj)
    Processor (\_PR.CPU0, 0x01, 0x00000410, 0x06)
    {
        Name (_HID, "ACPI0007")
    }
    ThermalZone (\_TZ.TZ00)
    {
        Name (_TZP, 10)
        Method (_TMP, 0, Serialized) { Return (3000) }
        Method (_CRT, 0, NotSerialized) { Return (3732) }
    }
    Scope (\_SB)
    {
        OperationRegion (GIO0, SystemIO, 0x0125, 0x10)
        Field (GIO0, ByteAcc, Lock, WriteAsOnes)
        {
            IDX0, 8,
            DAT0, 8,
            , 4,
            BNK0, 4,
            Offset (0x08),
            AccessAs (WordAcc, 0x00),
            WRD0, 16
        }
        IndexField (IDX0, DAT0, ByteAcc, NoLock, Preserve)
        {
            Offset (0x10),
            IF00, 8,
            IF01, 3,
            , 5,
            IF02, 32
        }
        BankField (GIO0, BNK0, 0x02, ByteAcc, NoLock, Preserve)
        {
            Offset (0x04),
            BF00, 8
        }
        OperationRegion (SMB0, SMBus, 0x00, 0x100)
        Field (SMB0, BufferAcc, NoLock, Preserve)
        {
            AccessAs (BufferAcc, AttribBlock),
            SB00, 8,
            AccessAs (BufferAcc, AttribBytes (0x05)),
            SB01, 8
        }
        OperationRegion (GPI0, GeneralPurposeIo, Zero, One)
        Field (GPI0, ByteAcc, NoLock, Preserve)
        {
            Connection (GpioIo (Exclusive, PullUp, 0x0000, 0x0000, IoRestrictionOutputOnly, "\\_SB.GPO0", 0x00, ResourceConsumer, , ) { 0x0012 }),
            GP00, 1
        }
        DataTableRegion (DTR0, "FACP", "", "")
        Device (DEV1)
        {
            Name (_HID, EisaId ("PNP0C0C"))
            Name (_UID, 0x01)
            Name (PKV, Package (0x03) { One, "two", Package () { 0x03 } })
            Name (BUF1, Buffer () { 0x01, 0x02, 0x03 })
            Method (M001, 3, Serialized, 7)
            {
                Local0 = Package (Arg0) {}
                Local1 = Match (PKV, MEQ, One, MTR, Zero, Zero)
                Local2 = Mid ("abcdef", One, 0x02)
                Local3 = ToString (BUF1, Ones)
                Local4 = ToBCD (0x63)
                Local5 = FromBCD (0x99)
                CopyObject (Local4, Local6)
                Local7 = ConcatenateResTemplate (ResourceTemplate () {}, ResourceTemplate () {})
                CreateField (BUF1, 0x03, 0x05, CF00)
                CreateBitField (BUF1, 0x01, CB00)
                CreateQWordField (Buffer (0x10) {}, 0x08, CQ00)
                Local0 = (Arg1 % 0x07)
                Local0 = ~Arg1
                Local0 = (Arg1 ^ 0x05)
                Local0 = NAnd (Arg1, 0x0F)
                Local0 = NOr (Arg1, 0x0F)
                Local0 = FindSetLeftBit (Arg1)
                Local0 = FindSetRightBit (Arg1)
                Divide (Arg1, 0x03, Local1, Local0)
                Divide (Arg1, 0x03, , Local0)
                Local0 = ToDecimalString (Arg1)
                Local0 = ToHexString (Arg1)
                Local0 = ToInteger ("0x10")
                Local0 = Concatenate ("a", "b")
                While (One)
                {
                    If (Arg2 > 0x05) { Break }
                    ElseIf (Arg2 == 0x02) { Continue }
                    Else { Noop }
                    Arg2--
                }
                BreakPoint
                Fatal (0x01, 0x00000002, Arg1)
                Load (GIO0, Local0)
                Unload (Local0)
                LoadTable ("OEM1", "", "", "\\", "\\_SB.PCI0", Zero)
                \_SB.EXT1 (Arg0, Arg1)
                Local0 = \_SB.EXT3 (Arg0, Arg1, Arg2)
                Local1 = \_SB.LATE (Arg0, 0x02)
                Return (DerefOf (PKV [One]))
            }
            Method (M002, 1, NotSerialized)
            {
                Return (M001 (Arg0, Arg0, Arg0))
            }
        }
        PowerResource (PRS0, 0x03, 0x0002)
        {
            Method (_STA, 0, NotSerialized) { Return (One) }
        }
    }
    Scope (\_SB)
    {
        Method (LATE, 2, NotSerialized)
        {
            Return (Arg0 + Arg1)
        }
    }
    If (CondRefOf (\_OSI))
    {
        Name (\_SB.CND0, 0x55)
    }
}
`

// decCompileASL compiles src with iasl (no constant folding) and returns the
// table.
func decCompileASL(t *testing.T, iasl, src string) []byte {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "x.asl")
	require.NoError(t, os.WriteFile(in, []byte(src), 0o644))
	cmd := exec.Command(iasl, "-of", "-p", filepath.Join(dir, "x"), in)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	b, err := os.ReadFile(filepath.Join(dir, "x.aml"))
	require.NoError(t, err)
	return b
}

// iaslInputs is every table the iasl comparisons run on.
func iaslInputs(t *testing.T, iasl string) map[string][]byte {
	m := allTables(t)
	m["exotic/SSDT"] = decCompileASL(t, iasl, exoticASL)
	return m
}

func TestDecodeExoticRoundTrip(t *testing.T) {
	iasl := fixtures.RequireTool(t, "iasl")
	b := decCompileASL(t, iasl, exoticASL)
	root, err := Decode(b[36:])
	require.NoError(t, err)
	again, err := root.AppendAML(nil)
	require.NoError(t, err)
	require.Equal(t, b[36:], again)
	var sb strings.Builder
	require.NoError(t, Format(&sb, root))
	txt := sb.String()
	for _, want := range []string{
		"Processor (\\_PR.CPU0, 0x01, 0x00000410, 0x06)",
		"PowerResource (PRS0, 0x03, 0x0002)",
		"IndexField (IDX0, DAT0, ByteAcc, NoLock, Preserve)",
		"BankField (GIO0, BNK0, 0x02, ByteAcc, NoLock, Preserve)",
		"AccessAs (BufferAcc, 0x0B, 0x05)",
		"Connection (Buffer (0x23)",
		"DataTableRegion (DTR0, \"FACP\", \"\", \"\")",
		"Store (VarPackage (Arg0)",
		"Store (Match (PKV, MEQ, One, MTR, Zero, Zero), Local1)",
		"Fatal (0x01, 0x00000002, Arg1)",
		"LoadTable (\"OEM1\", \"\", \"\", \"\\\\\", \"\\\\_SB.PCI0\", Zero)",
		"Store (\\_SB.EXT3 (Arg0, Arg1, Arg2), Local0)",
		"Store (\\_SB.LATE (Arg0, 0x02), Local1)",
		"Return (M001 (Arg0, Arg0, Arg0))",
		"ElseIf (LEqual (Arg2, 0x02))",
		"Method (M001, 3, Serialized, 7)",
		"Field (GIO0, ByteAcc, Lock, WriteAsOnes)",
		"BNK0,   4,  // at byte 0x02 bit 4",
	} {
		assert.Contains(t, txt, want)
	}
}

func TestDecodeMatchesIaslDeclarations(t *testing.T) {
	iasl := fixtures.RequireTool(t, "iasl")
	for p, b := range iaslInputs(t, iasl) {
		t.Run(filepath.Base(filepath.Dir(p))+"/"+filepath.Base(p), func(t *testing.T) {
			root, err := Decode(b[36:])
			require.NoError(t, err)
			want := iaslDecls(t, iasl, b)
			got := treeDecls(root)
			assert.Equal(t, want, got)
		})
	}
}

func TestIaslDeclsSanity(t *testing.T) {
	iasl := fixtures.RequireTool(t, "iasl")
	b, err := os.ReadFile(filepath.Join(fixtures.Real(t), "tables", "q35_seabios_default", "DSDT.dat"))
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
	kids := root.Children()
	cut, err := Decode(b[36 : 36+kids[len(kids)-1].Off()])
	require.NoError(t, err)
	assert.NotEqual(t, want, treeDecls(cut))
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
	for p, b := range iaslInputs(t, iasl) {
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
			require.NotZero(t, total)
		})
	}
}
