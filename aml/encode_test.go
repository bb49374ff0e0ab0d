package aml

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustEncode(t *testing.T, terms ...Term) []byte {
	t.Helper()
	b, err := Encode(terms...)
	require.NoError(t, err)
	return b
}

func TestAppendPkgLength(t *testing.T) {
	for _, tc := range []struct {
		body int
		want []byte
	}{
		{0, []byte{0x01}},
		{62, []byte{0x3F}},                            // 62+1 = 63 fits 6 bits
		{63, []byte{0x41, 0x04}},                      // 63+2 = 65 = 0x41
		{4093, []byte{0x4F, 0xFF}},                    // 4093+2 = 0xFFF
		{4094, []byte{0x81, 0x00, 0x01}},              // 4094+3 = 0x1001
		{0xFFFFF - 3, []byte{0x8F, 0xFF, 0xFF}},       // 0xFFFFF
		{0xFFFFF - 2, []byte{0xC1, 0x00, 0x00, 0x01}}, // 0xFFFFD+4 = 0x100001
		{MaxPkgLength - 4, []byte{0xCF, 0xFF, 0xFF, 0xFF}},
	} {
		got, err := AppendPkgLength(nil, tc.body)
		require.NoError(t, err, "body %d", tc.body)
		assert.Equal(t, tc.want, got, "body %d", tc.body)
		n, err := PkgLengthSize(tc.body)
		require.NoError(t, err)
		assert.Equal(t, len(tc.want), n)
	}
	_, err := AppendPkgLength(nil, MaxPkgLength-3)
	require.ErrorIs(t, err, ErrTooLong)
	_, err = AppendPkgLength(nil, -1)
	require.ErrorIs(t, err, ErrOutOfRange)

	// Field widths: the value itself, same thresholds (iasl: 62 -> 1 byte, 63 -> 2).
	for _, tc := range []struct {
		v    int
		want []byte
	}{{1, []byte{0x01}}, {62, []byte{0x3E}}, {63, []byte{0x4F, 0x03}}, {64, []byte{0x40, 0x04}}, {0x1000, []byte{0x80, 0x00, 0x01}}} {
		got, err := AppendPkgLengthValue(nil, tc.v)
		require.NoError(t, err)
		assert.Equal(t, tc.want, got, "value %d", tc.v)
	}
}

// bigScope returns ASL and the builder expression for Scope (\_SB) whose
// body (everything after the PkgLength) is exactly bodyLen bytes, made of
// Name objects holding strings of at most 4000 characters (iasl's limit is
// 4096).
func bigScope(bodyLen int) (string, Term) {
	var asl strings.Builder
	asl.WriteString("DefinitionBlock (\"\", \"SSDT\", 2, \"ACPIDG\", \"GOLDEN\", 1)\n{\n    Scope (\\_SB)\n    {\n")
	var terms []Term
	left := bodyLen - 5 // "\_SB_"
	for i := 0; left > 0; i++ {
		n := min(4000, left-7) // NameOp + NameSeg + StringPrefix + s + NUL
		if rest := left - (n + 7); rest > 0 && rest < 8 {
			n -= 8 // leave room for a last, non-empty Name
		}
		s := strings.Repeat(string(rune('a'+i%26)), n)
		name := fmt.Sprintf("S%03d", i)
		fmt.Fprintf(&asl, "        Name (%s, \"%s\")\n", name, s)
		terms = append(terms, Name(name, Str(s)))
		left -= n + 7
	}
	asl.WriteString("    }\n}\n")
	return asl.String(), Scope(`\_SB`, terms...)
}

// TestPkgLengthBoundariesIasl checks the PkgLength at the 1/2, 2/3 and 3/4
// byte boundaries (bodies of 62/63 bytes, 4093/4094 bytes and ~1 MiB)
// against iasl.
func TestPkgLengthBoundariesIasl(t *testing.T) {
	iasl := fixtures.RequireTool(t, "iasl")
	for _, tc := range []struct {
		body, lenBytes int
	}{
		{62, 1}, {63, 2}, {64, 2}, // the length counts its own bytes: 62+1 = 0x3F is the last 1-byte length
		{4093, 2}, {4094, 3}, {4095, 3}, {4096, 3},
		{0xFFFFF - 3, 3}, {0xFFFFF - 2, 4}, {1 << 20, 4},
	} {
		t.Run(fmt.Sprint(tc.body), func(t *testing.T) {
			asl, term := bigScope(tc.body)
			src := filepath.Join(t.TempDir(), "big.asl")
			require.NoError(t, os.WriteFile(src, []byte(asl), 0o644))
			want := tableBody(t, compileASL(t, iasl, src))
			got := mustEncode(t, term)
			requireSameAML(t, want, got)
			require.Equal(t, 1+tc.lenBytes+tc.body, len(got), "ScopeOp + PkgLength + body")
			size, err := PkgLengthSize(tc.body)
			require.NoError(t, err)
			require.Equal(t, tc.lenBytes, size)
		})
	}
}

// TestNestedPkgLengthShift encodes nested packages whose lengths all need
// more than one byte, so every close moves an already moved body again.
func TestNestedPkgLengthShift(t *testing.T) {
	leaf := Name("LEAF", Buffer(make([]byte, 5000)))
	got := mustEncode(t, Scope(`\_SB`, Device("DEV0", Method("M000", 0, NotSerialized, If(One, Store(Buffer(make([]byte, 100)), Local(0)))), leaf)))
	// Scope: 10 <3-byte len> \_SB_ ...
	require.Equal(t, byte(ScopeOp), got[0])
	n := int(got[1]&0x0F) | int(got[2])<<4 | int(got[3])<<12
	require.Equal(t, byte(2), got[1]>>6, "3-byte PkgLength")
	require.Equal(t, len(got)-1, n, "scope length covers the whole rest")
	require.Equal(t, []byte(`\_SB_`), got[4:9])
	require.Equal(t, []byte{ExtOpPrefix, DeviceOp}, got[9:11])
}

// Rust-vmm style: the ASL, and the bytes iasl produces for it (taken from
// the golden .aml files), checked without iasl.
func TestEncodeInline(t *testing.T) {
	for _, tc := range []struct {
		asl  string
		term Term
		hex  string
	}{
		{`Name (I001, 1)`, Name("I001", Int(1)), "08 49 30 30 31 01"},
		{`Name (I002, 2)`, Name("I002", Int(2)), "08 49 30 30 32 0A 02"},
		{`Name (I004, 0x100)`, Name("I004", Int(0x100)), "08 49 30 30 34 0B 00 01"},
		{`Name (I006, 0x10000)`, Name("I006", Int(0x10000)), "08 49 30 30 36 0C 00 00 01 00"},
		{`Name (I007, 0xFFFFFFFF)`, Name("I007", Int(0xFFFFFFFF)), "08 49 30 30 37 0C FF FF FF FF"},
		{`Name (I008, 0x100000000)`, Name("I008", Int(0x100000000)), "08 49 30 30 38 0E 00 00 00 00 01 00 00 00"},
		{`Name (I009, 0xFFFFFFFFFFFFFFFF)`, Name("I009", Int(0xFFFFFFFFFFFFFFFF)), "08 49 30 30 39 FF"},
		{`Name (S001, "hi")`, Name("S001", Str("hi")), "08 53 30 30 31 0D 68 69 00"},
		{`Name (B003, Buffer (4) {0x07})`, Name("B003", BufferN(Int(4), []byte{7})), "08 42 30 30 33 11 04 0A 04 07"},
		{`Name (B000, Buffer () {})`, Name("B000", Buffer(nil)), "08 42 30 30 30 11 02 00"},
		{`Name (P002, Package (5) {One})`, Name("P002", PackageN(5, One)), "08 50 30 30 32 12 03 05 01"},
		{`Scope (\_SB.PCI9.DIAG) { Name (X, One) }`, Scope(`\_SB.PCI9.DIAG`, Name("X", One)),
			"10 16 5C 2F 03 5F 53 42 5F 50 43 49 39 44 49 41 47 08 58 5F 5F 5F 01"},
		{`Method (M003, 2, Serialized, 15) { Return (Arg1) }`, Method("M003", 2, Serialized|SyncLevel(15), Return(Arg(1))),
			"14 08 4D 30 30 33 FA A4 69"},
		{`ThermalZone (\_TZ.TZ2) { Method (_TMP) { Return (0x0BB8) } }`,
			ThermalZone(`\_TZ.TZ2`, Method("_TMP", 0, NotSerialized, Return(Int(3000)))),
			"5B 85 16 5C 2E 5F 54 5A 5F 54 5A 32 5F 14 0A 5F 54 4D 50 00 A4 0B B8 0B"},
		{`OperationRegion (R002, PCI_Config, Zero, 0x0100)`, OperationRegion("R002", PCIConfig, Zero, Int(0x100)),
			"5B 80 52 30 30 32 02 00 0B 00 01"},
		{`Field (OPR0, DWordAcc, Lock, WriteAsOnes) { Offset (0x400), D000, 32, D001, 32 }`,
			Field("OPR0", DWordAcc, Lock, WriteAsOnes, Offset(0x400), FieldUnit("D000", 32), FieldUnit("D001", 32)),
			"5B 81 14 4F 50 52 30 33 00 80 00 02 44 30 30 30 20 44 30 30 31 20"},
		{`If (Arg0) { Local0 = One } Else { Local0 = Zero }`,
			If(Arg(0), Store(One, Local(0))).Else(Store(Zero, Local(0))),
			"A0 05 68 70 01 60 A1 04 70 00 60"},
		{`Add (Arg0, Arg1, )`, Add(Arg(0), Arg(1), nil), "72 68 69 00"},
		{`LNotEqual (Arg0, Arg1)`, LNotEqual(Arg(0), Arg(1)), "92 93 68 69"},
		{`Acquire (MTX0, 0xFFFF)`, Acquire(NameString("MTX0"), 0xFFFF), "5B 23 4D 54 58 30 FF FF"},
		{`Local1 = Timer`, Store(Timer(), Local(1)), "70 5B 33 61"},
		{`CreateDWordField (BUFF, Zero, CDW0)`, CreateDWordField(NameString("BUFF"), Zero, "CDW0"),
			"8A 42 55 46 46 00 43 44 57 30"},
		{`External (\_SB.FO2, MethodObj) // 2 arguments`, External(`\_SB.FO2`, MethodObj, 2),
			"15 5C 2E 5F 53 42 5F 46 4F 32 5F 08 02"},
		{`\_OSI ("Linux")`, Call(`\_OSI`, Str("Linux")), "5C 5F 4F 53 49 0D 4C 69 6E 75 78 00"},
		{`Processor (CPU0, 0x00, 0x00000000, 0x00) {}`, Processor("CPU0", 0, 0, 0), "5B 83 0B 43 50 55 30 00 00 00 00 00 00"},
		{`^^^SBX`, NameString("^^^SBX"), "5E 5E 5E 53 42 58 5F"},
		{`\`, NameString(`\`), "5C 00"},
		{`^`, NameString(`^`), "5E 00"},
		{`_SB.PCI9`, NameString("_SB.PCI9"), "2E 5F 53 42 5F 50 43 49 39"},
	} {
		t.Run(tc.asl, func(t *testing.T) {
			got := mustEncode(t, tc.term)
			assert.Equal(t, tc.hex, fmt.Sprintf("% X", got))
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	for _, tc := range []struct {
		what      string
		term      Term
		sentinel  error
		construct string
		path      string
		within    []string
		msg       string // substring of Error()
	}{
		{"segment too long", Name("ABCDE", One), ErrBadName, "Name", "ABCDE", nil, `segment "ABCDE" at offset 0 is 5 characters long`},
		{"bad char", Name("AB-C", One), ErrBadName, "Name", "AB-C", nil, `character '-' at offset 2`},
		{"lowercase", Device("diag"), ErrBadName, "Device", "diag", nil, "not A-Z"},
		{"leading digit", Scope(`\_SB.1ABC`), ErrBadName, "Scope", `\_SB.1ABC`, nil, "offset 5 starts with digit"},
		{"empty segment", NameString(`\_SB..X`), ErrBadName, "NameString", `\_SB..X`, nil, "empty segment at offset 5"},
		{"empty name", Method("", 0, NotSerialized), ErrBadName, "Method", "", nil, "empty name"},
		{"root then parent", NameString(`\^A`), ErrBadName, "NameString", `\^A`, nil, "character '^'"},
		{"too many args", Method("M", 8, NotSerialized), ErrOutOfRange, "Method", "M", nil, "argument count 8"},
		{"negative args", Method("M", -1, NotSerialized), ErrOutOfRange, "Method", "M", nil, "argument count -1"},
		{"call with 8 args", Call("M", One, One, One, One, One, One, One, One), ErrOutOfRange, "MethodCall", "M", nil, "8 arguments"},
		{"local 8", Method("M", 0, NotSerialized, Store(One, Local(8))), ErrOutOfRange, "Local", "", []string{"M"}, "index 8"},
		{"local -1", Local(-1), ErrOutOfRange, "Local", "", nil, "index -1"},
		{"arg 7", Scope(`\_SB`, Method("M", 0, NotSerialized, Return(Arg(7)))), ErrOutOfRange, "Arg", "", []string{`\_SB`, "M"}, `Arg (in \_SB > M): index 7, want 0-6`},
		{"method sync level", Method("M", 0, Serialized|SyncLevel(16)), ErrOutOfRange, "Method", "M", nil, "sync level 16"},
		{"method sync level 255", Method("M", 0, SyncLevel(255)), ErrOutOfRange, "Method", "M", nil, "sync level 255"},
		{"method flags", Method("M", 0, MethodFlags(1)), ErrOutOfRange, "Method", "M", nil, "method flags 0x1: unknown bits"},
		{"mutex sync level", Mutex("MTX", 16), ErrOutOfRange, "Mutex", "MTX", nil, "sync level 16"},
		{"package 256", Package(make256()...), ErrTooLong, "Package", "", nil, "256 elements, at most 255"},
		{"packageN 256", PackageN(256), ErrTooLong, "Package", "", nil, "256 elements"},
		{"packageN short", PackageN(1, One, One), ErrOutOfRange, "Package", "", nil, "count 1 is smaller than the 2"},
		{"buffer size short", BufferN(Int(1), []byte{1, 2}), ErrTooLong, "Buffer", "", nil, "size 1 is smaller"},
		{"field backwards", Field("OPR", AnyAcc, NoLock, Preserve, FieldUnit("A", 32), Offset(2)), ErrFieldOffset, "Field", "OPR", nil,
			"element 1: Offset(0x2) is before the current position (bit 32, byte 0x4)"},
		{"field width 0", Field("OPR", AnyAcc, NoLock, Preserve, FieldUnit("A", 0)), ErrOutOfRange, "Field", "OPR", nil, "element 0: width 0 bits"},
		{"reserved width 0", Field("OPR", AnyAcc, NoLock, Preserve, Reserved(0)), ErrOutOfRange, "Field", "OPR", nil, "width 0 bits"},
		{"field unit too wide", Field("OPR", AnyAcc, NoLock, Preserve, FieldUnit("A", MaxFieldWidth+1)), ErrOutOfRange, "Field", "OPR", nil, "width 268435452 bits, want 1-268435451"},
		{"field overflow", Field("OPR", AnyAcc, NoLock, Preserve, Offset(0x1FFFFFFF), FieldUnit("A", 16)), ErrFieldOffset, "Field", "OPR", nil, "beyond the 32-bit bit offset space"},
		{"field offset overflow", Field("OPR", AnyAcc, NoLock, Preserve, Offset(1<<29)), ErrFieldOffset, "Field", "OPR", nil, "Offset(0x20000000) out of range"},
		{"field unit name", Field("OPR", AnyAcc, NoLock, Preserve, FieldUnit(`\A`, 8)), ErrBadName, "Field", `\A`, []string{"OPR"}, `character '\\'`},
		{"field zero element", Field("OPR", AnyAcc, NoLock, Preserve, FieldElement{}), ErrBadOperand, "Field", "OPR", nil, "zero FieldElement"},
		{"field access type", Field("OPR", AccessType(6), NoLock, Preserve), ErrOutOfRange, "Field", "OPR", nil, "access type 6"},
		{"field update rule", Field("OPR", AnyAcc, NoLock, UpdateRule(3)), ErrOutOfRange, "Field", "OPR", nil, "update rule 3"},
		{"field lock rule", Field("OPR", AnyAcc, LockRule(2), Preserve), ErrOutOfRange, "Field", "OPR", nil, "lock rule 2"},
		{"accessas type", Field("OPR", AnyAcc, NoLock, Preserve, AccessAs(AccessType(9), 0)), ErrOutOfRange, "Field", "OPR", nil, "access type 9"},
		{"nil in scope", Scope(`\_SB`, nil), ErrNilTerm, "TermList", "", []string{`\_SB`}, "nil term"},
		{"nil store src", Store(nil, Local(0)), ErrNilTerm, "Store", "", nil, "operand 1"},
		{"nil store dst", Store(One, nil), ErrNilTerm, "Store", "", nil, "operand 2"},
		{"nil name value", Name("X", nil), ErrNilTerm, "Name", "X", nil, "value"},
		{"nil if predicate", If(nil), ErrNilTerm, "If", "", nil, "predicate"},
		{"nil while predicate", While(nil), ErrNilTerm, "While", "", nil, "predicate"},
		{"nil return", Return(nil), ErrNilTerm, "Return", "", nil, "operand 1"},
		{"nil package element", Package(One, nil), ErrNilTerm, "Package", "", nil, "element 1"},
		{"nil varpackage count", VarPackage(nil), ErrNilTerm, "VarPackage", "", nil, "element count: nil term"},
		{"nil buffer size", BufferN(nil, nil), ErrNilTerm, "Buffer", "", nil, "size: nil term"},
		{"nil call arg", Call("M", nil), ErrNilTerm, "MethodCall", "M", nil, "argument 0"},
		{"nil region offset", OperationRegion("R", SystemMemory, nil, One), ErrNilTerm, "OperationRegion", "R", nil, "offset"},
		{"nil region length", OperationRegion("R", SystemMemory, One, nil), ErrNilTerm, "OperationRegion", "R", nil, "length"},
		{"store to constant", Store(One, Int(5)), ErrBadOperand, "Store", "", nil, "operand 2 must be a name"},
		{"add target constant", Add(One, One, Str("x")), ErrBadOperand, "Add", "", nil, "operand 3"},
		{"increment constant", Increment(One), ErrBadOperand, "Increment", "", nil, "operand 1"},
		{"bad string", Str("a\x00b"), ErrBadString, "String", "", nil, "byte 0x00 at offset 1"},
		{"non-ascii string", Str("é"), ErrBadString, "String", "", nil, "byte 0xC3 at offset 0"},
		{"external type", External("X", ObjectType(16), 0), ErrOutOfRange, "External", "X", nil, "object type 16"},
		{"external nargs", External("X", IntObj, 1), ErrOutOfRange, "External", "X", nil, "argument count 1"},
		{"external method nargs", External("X", MethodObj, 8), ErrOutOfRange, "External", "X", nil, "argument count 8"},
		{"region space", OperationRegion("R", RegionSpace(0x20), Zero, One), ErrOutOfRange, "OperationRegion", "R", nil, "region space 0x20 is reserved"},
		{"bad const", ConstObj(5), ErrOutOfRange, "ConstObj", "", nil, "0x05"},
		{"create field name", CreateDWordField(NameString("B"), Zero, ""), ErrBadName, "CreateDWordField", "\x00", nil, "character '\\x00'"},
		{"name in thermal zone", ThermalZone(`\_TZ.DIAG`, Name("_TZP", Int(10)), Method("_TMP", 0, NotSerialized, Store(One, NameString("a")))),
			ErrBadName, "NameString", "a", []string{`\_TZ.DIAG`, "_TMP"}, `NameString a (in \_TZ.DIAG > _TMP)`},
		{"else body", If(One).Else(nil), ErrNilTerm, "TermList", "", nil, "nil term"},
		{"alias", Alias("A", "1"), ErrBadName, "Alias", "1", nil, "digit"},
		{"event", Event(""), ErrBadName, "Event", "", nil, "empty"},
		{"eisaid short", EISAID("PNP0A0"), ErrBadString, "EisaId", "", nil, "6 characters long"},
		{"eisaid letter", EISAID("PnP0A03"), ErrBadString, "EisaId", "", nil, "'n' at offset 1 is not A-Z"},
		{"eisaid hex", EISAID("PNP0a03"), ErrBadString, "EisaId", "", nil, "'a' at offset 4 is not 0-9 or A-F"},
		{"name of a local", Name("X", Local(0)), ErrBadOperand, "Name", "X", nil, "value is aml.localTerm, not a data object"},
		{"name of a name", Name("X", NameString("Y")), ErrBadOperand, "Name", "X", nil, "not a data object"},
		{"package of a store", Package(Store(One, Local(0))), ErrBadOperand, "Package", "", nil, "element 0 is *aml.opTerm, not a data object or name"},
		{"too many segments", NameString(strings.Repeat("A.", 255) + "A"), ErrBadName, "NameString", "", nil, "256 segments, at most 255"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			b, err := Encode(tc.term)
			require.Error(t, err, "encoded % X", b)
			require.ErrorIs(t, err, tc.sentinel)
			var e *EncodeError
			require.True(t, errors.As(err, &e), "error type %T", err)
			assert.Equal(t, tc.construct, e.Construct)
			if tc.path != "" || tc.construct != "NameString" {
				assert.Equal(t, tc.path, e.Path)
			}
			assert.Equal(t, tc.within, e.Within)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func make256() []Term {
	ts := make([]Term, 256)
	for i := range ts {
		ts[i] = One
	}
	return ts
}

func TestPackageLengthTooLong(t *testing.T) {
	// A body beyond 2^28-1 bytes cannot be encoded.
	big := Raw(make([]byte, MaxPkgLength))
	_, err := Encode(Scope(`\_SB`, big))
	require.ErrorIs(t, err, ErrTooLong)
	var e *EncodeError
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "Scope", e.Construct)
	assert.Equal(t, `\_SB`, e.Path)
	assert.Contains(t, err.Error(), "exceeds the PkgLength maximum")
}

// TestFieldWideUnits: the widest unit encodes in 4 bytes, and an Offset gap
// wider than one PkgLength is split into several reserved elements whose
// widths add up (iasl refuses such a gap: "Package length too long").
func TestFieldWideUnits(t *testing.T) {
	b := mustEncode(t, Field("OPR0", AnyAcc, NoLock, Preserve, FieldUnit("W", MaxFieldWidth)))
	assert.Equal(t, "5B 81 0E 4F 50 52 30 00 57 5F 5F 5F CB FF FF FF", fmt.Sprintf("% X", b))

	b = mustEncode(t, Field("OPR0", AnyAcc, NoLock, Preserve, Offset(0x4000000), FieldUnit("X", 8)))
	els := b[8:] // after ExtOp FieldOp PkgLength(1) "OPR0" flags
	var total int
	for len(els) > 0 && els[0] == 0x00 {
		n := int(els[1]>>6) + 1
		v := int(els[1] & 0x0F)
		if n == 1 {
			v = int(els[1] & 0x3F)
		}
		for i := 1; i < n; i++ {
			v |= int(els[1+i]) << (4 + 8*(i-1))
		}
		require.LessOrEqual(t, v, MaxFieldWidth)
		total += v
		els = els[1+n:]
	}
	assert.Equal(t, 0x4000000*8, total, "reserved gaps add up to the offset")
	assert.Equal(t, []byte{'X', '_', '_', '_', 8}, els)
}

func TestPackage255(t *testing.T) {
	b := mustEncode(t, Package(make256()[:255]...))
	// body = count byte + 255 One = 256; PkgLength = 258 = 0x102.
	assert.Equal(t, []byte{PackageOp, 0x42, 0x10, 0xFF}, b[:4])
	assert.Len(t, b, 4+255)
	// More elements: VarPackage.
	b = mustEncode(t, VarPackage(Int(256), make256()...))
	// body = 3-byte count + 256 One = 259; PkgLength = 261 = 0x105.
	assert.Equal(t, []byte{VarPackageOp, 0x45, 0x10, WordPrefix, 0x00, 0x01}, b[:6])
}

func TestNameParse(t *testing.T) {
	for _, tc := range []struct {
		in      NameString
		root    bool
		parents int
		segs    []string
	}{
		{`\`, true, 0, nil},
		{`^`, false, 1, nil},
		{`\_SB.PCI0.DIAG`, true, 0, []string{"_SB_", "PCI0", "DIAG"}},
		{`^^FOO`, false, 2, []string{"FOO_"}},
		{`AB`, false, 0, []string{"AB__"}},
		{`_TZ.DIAG`, false, 0, []string{"_TZ_", "DIAG"}},
	} {
		root, parents, segs, err := tc.in.Parse()
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.root, root, tc.in)
		assert.Equal(t, tc.parents, parents, tc.in)
		assert.Equal(t, tc.segs, segs, tc.in)
		s, err := tc.in.Segments()
		require.NoError(t, err)
		assert.Equal(t, tc.segs, s)
		require.NoError(t, tc.in.Validate())
		// MakeNameString is the inverse (with padded segments).
		back := MakeNameString(root, parents, segs...)
		b1 := mustEncode(t, tc.in)
		b2 := mustEncode(t, back)
		assert.Equal(t, b1, b2, "%s -> %s", tc.in, back)
	}
	require.ErrorIs(t, NameString("A.B.").Validate(), ErrBadName)
	_, err := NameString("").Segments()
	require.ErrorIs(t, err, ErrBadName)
}

func TestAppendEncodeKeepsPrefix(t *testing.T) {
	dst := []byte{0xAA, 0xBB}
	b, err := AppendEncode(dst, Name("X", Int(2)), Scope("Y", Name("Z", Ones)))
	require.NoError(t, err)
	assert.Equal(t, "AA BB 08 58 5F 5F 5F 0A 02 10 0B 59 5F 5F 5F 08 5A 5F 5F 5F FF", fmt.Sprintf("% X", b))
}

// TestOperatorNamesInErrors: every operator reports its ASL name (derived
// from its opcode through the one opcode table, spelled as iasl -dl prints
// it) when an operand is missing, and the decoder and printer name the
// encoded operator the same way.
func TestOperatorNamesInErrors(t *testing.T) {
	l := Local(0)
	for want, build := range map[string]func(n Term) Term{
		"Store":            func(n Term) Term { return Store(n, l) },
		"CopyObject":       func(n Term) Term { return CopyObject(n, l) },
		"Add":              func(n Term) Term { return Add(n, l, nil) },
		"Subtract":         func(n Term) Term { return Subtract(n, l, nil) },
		"Multiply":         func(n Term) Term { return Multiply(n, l, nil) },
		"Mod":              func(n Term) Term { return Mod(n, l, nil) },
		"And":              func(n Term) Term { return And(n, l, nil) },
		"Or":               func(n Term) Term { return Or(n, l, nil) },
		"XOr":              func(n Term) Term { return Xor(n, l, nil) },
		"NAnd":             func(n Term) Term { return Nand(n, l, nil) },
		"NOr":              func(n Term) Term { return Nor(n, l, nil) },
		"ShiftLeft":        func(n Term) Term { return ShiftLeft(n, l, nil) },
		"ShiftRight":       func(n Term) Term { return ShiftRight(n, l, nil) },
		"Concatenate":      func(n Term) Term { return Concatenate(n, l, nil) },
		"Index":            func(n Term) Term { return Index(n, l, nil) },
		"Divide":           func(n Term) Term { return Divide(n, l, nil, nil) },
		"Not":              func(n Term) Term { return Not(n, nil) },
		"FindSetLeftBit":   func(n Term) Term { return FindSetLeftBit(n, nil) },
		"FindSetRightBit":  func(n Term) Term { return FindSetRightBit(n, nil) },
		"ToInteger":        func(n Term) Term { return ToInteger(n, nil) },
		"ToBuffer":         func(n Term) Term { return ToBuffer(n, nil) },
		"ToHexString":      func(n Term) Term { return ToHexString(n, nil) },
		"ToDecimalString":  func(n Term) Term { return ToDecimalString(n, nil) },
		"ToString":         func(n Term) Term { return ToString(n, l, nil) },
		"Mid":              func(n Term) Term { return Mid(n, l, l, nil) },
		"Increment":        func(n Term) Term { return Increment(n) },
		"Decrement":        func(n Term) Term { return Decrement(n) },
		"DerefOf":          func(n Term) Term { return DerefOf(n) },
		"RefOf":            func(n Term) Term { return RefOf(n) },
		"CondRefOf":        func(n Term) Term { return CondRefOf(n, nil) },
		"SizeOf":           func(n Term) Term { return SizeOf(n) },
		"ObjectType":       func(n Term) Term { return ObjectTypeOf(n) },
		"LAnd":             func(n Term) Term { return LAnd(n, l) },
		"LOr":              func(n Term) Term { return LOr(n, l) },
		"LNot":             func(n Term) Term { return LNot(n) },
		"LEqual":           func(n Term) Term { return LEqual(n, l) },
		"LGreater":         func(n Term) Term { return LGreater(n, l) },
		"LLess":            func(n Term) Term { return LLess(n, l) },
		"LNotEqual":        func(n Term) Term { return LNotEqual(n, l) },
		"LLessEqual":       func(n Term) Term { return LLessEqual(n, l) },
		"LGreaterEqual":    func(n Term) Term { return LGreaterEqual(n, l) },
		"Notify":           func(n Term) Term { return Notify(n, l) },
		"Return":           func(n Term) Term { return Return(n) },
		"Sleep":            func(n Term) Term { return Sleep(n) },
		"Stall":            func(n Term) Term { return Stall(n) },
		"Acquire":          func(n Term) Term { return Acquire(n, 1) },
		"Release":          func(n Term) Term { return Release(n) },
		"Signal":           func(n Term) Term { return Signal(n) },
		"Reset":            func(n Term) Term { return Reset(n) },
		"Wait":             func(n Term) Term { return Wait(n, l) },
		"CreateDWordField": func(n Term) Term { return CreateDWordField(n, l, "X") },
		"CreateWordField":  func(n Term) Term { return CreateWordField(n, l, "X") },
		"CreateByteField":  func(n Term) Term { return CreateByteField(n, l, "X") },
		"CreateQWordField": func(n Term) Term { return CreateQWordField(n, l, "X") },
		"CreateBitField":   func(n Term) Term { return CreateBitField(n, l, "X") },
		"CreateField":      func(n Term) Term { return CreateField(n, l, l, "X") },
	} {
		_, err := Encode(build(nil))
		require.ErrorIs(t, err, ErrNilTerm, want)
		var e *EncodeError
		require.ErrorAs(t, err, &e)
		assert.Equal(t, want, e.Construct)
		if strings.HasPrefix(want, "Create") {
			assert.Equal(t, "X", e.Path, want)
		}
		// The builder gives the operator as many operands as its table
		// row has.
		var op *opTerm
		switch x := build(nil).(type) {
		case *opTerm:
			op = x
		case *namedOpTerm:
			op = &x.opTerm
		case *acquireTerm:
			op = &x.opTerm
		}
		require.NotNil(t, op, want)
		assert.Equal(t, codeSpec(op.code, op.ncode).operands, op.nargs, want)
		b, err := Encode(build(Local(1)))
		require.NoError(t, err, want)
		root, err := Decode(b)
		require.NoError(t, err, want)
		asl := root.String()
		assert.True(t, strings.HasPrefix(asl, want+" ("), "%s printed as %s", want, asl)
	}
}

// TestHelperErrorsAreEncodeErrors: the exported encoding helpers report
// bad input with the encoder's one error shape.
func TestHelperErrorsAreEncodeErrors(t *testing.T) {
	var e *EncodeError
	_, err := PkgLengthSize(MaxPkgLength)
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "PkgLength", e.Construct)
	assert.ErrorIs(t, err, ErrTooLong)
	_, err = AppendPkgLength(nil, -1)
	require.ErrorAs(t, err, &e)
	assert.ErrorIs(t, err, ErrOutOfRange)
	_, err = AppendPkgLengthValue(nil, MaxPkgLength+1)
	require.ErrorAs(t, err, &e)
	_, err = EISAIDValue("PNP")
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "EisaId", e.Construct)
	assert.Equal(t, "PNP", e.Path)
	assert.ErrorIs(t, err, ErrBadString)
	_, _, _, err = NameString("A..B").Parse()
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "NameString", e.Construct)
	assert.ErrorIs(t, err, ErrBadName)
	_, err = NameString("").Segments()
	require.ErrorAs(t, err, &e)
}
