package aml

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/stretchr/testify/require"
)

// The golden tests compare the builder's output with iasl's, byte for byte.
//
// Each fixtures/aml/<name>.asl is a small DefinitionBlock; goldenCases maps
// it to the builder expression for the same ASL. fixtures/aml/<name>.aml is
// the table iasl produced from it (checked in, so the comparison also runs
// where iasl is not installed). When iasl is present the test compiles every
// .asl again and requires the fresh output to equal the checked-in .aml, so a
// stale fixture cannot hide a difference.
//
// iasl flags: "-vs -on -of": -on keeps name paths as written (no
// named-reference optimization), -of disables constant folding (so an ASL
// expression maps to its own opcodes). Integer optimization (Zero/One/Ones)
// stays on: Int reproduces it. Run "go test ./aml -run Golden -update" to
// rewrite the .aml files after editing an .asl.

var update = flag.Bool("update", false, "rewrite fixtures/aml/*.aml from iasl")

// IaslFlags are the iasl options used to compile the golden ASL files.
var iaslFlags = []string{"-vs", "-on", "-of"}

const tableHeaderLen = 36

type N = NameString

func L(n int) Term { return Local(n) }
func A(n int) Term { return Arg(n) }

// sum builds t0 + t1 + ... as iasl encodes the ASL+ "a + b + c" expression:
// Add(Add(a, b), c) with NullName targets.
func sum(ts ...Term) Term {
	acc := ts[0]
	for _, t := range ts[1:] {
		acc = Add(acc, t, nil)
	}
	return acc
}

var goldenCases = map[string][]Term{
	"int": {
		Name("I000", Int(0)),
		Name("I001", Int(1)),
		Name("I002", Int(2)),
		Name("I003", Int(0xFF)),
		Name("I004", Int(0x100)),
		Name("I005", Int(0xFFFF)),
		Name("I006", Int(0x10000)),
		Name("I007", Int(0xFFFFFFFF)),
		Name("I008", Int(0x100000000)),
		Name("I009", Int(0xFFFFFFFFFFFFFFFF)),
		Name("I010", Int(0x123456789ABCDEF0)),
		Name("K000", Zero),
		Name("K001", One),
		Name("K002", Ones),
	},
	"eisaid": {
		Name("E000", EISAID("PNP0A03")),
		Name("E001", EISAID("AAA0000")), // small value: iasl optimizes it to a WordPrefix
		Name("E002", EISAID("ZZZFFFF")),
		Name("E003", EISAID("QEM0001")),
	},
	"string": {
		Name("S000", Str("")),
		Name("S001", Str("hello, world")),
		Name("S002", Str(`\_SB`)),
		Name("S003", Str("~!#$%&()*+,-./09:;<=>?@AZ[]^_`az{|}")),
	},
	"buffer": {
		Name("B000", Buffer(nil)),
		Name("B001", Buffer([]byte{7})),
		Name("B002", Buffer([]byte{1, 2, 3, 0xFF})),
		Name("B003", BufferN(Int(4), []byte{7})),
		Name("B004", BufferN(Int(0x100), nil)),
		Method("MBUF", 1, NotSerialized,
			Store(BufferN(A(0), nil), L(0)),
			Store(SizeOf(L(0)), L(2)),
			Store(BufferN(A(0), []byte{1, 2}), L(1)),
			Return(Add(L(1), L(2), nil)),
		),
	},
	"package": {
		Name("P000", Package()),
		Name("P001", Package(One, Str("a"), Package(Int(2)), Buffer([]byte{3}))),
		Name("P002", PackageN(5, One)),
		Name("P003", Package(N(`\_SB`), Str("b"))),
		Name("P004", VarPackage(Int(0x100), One)), // iasl: a constant count > 255 makes a VarPackage
		Name("P005", PackageN(0xFF, One)),
		Method("MPKG", 1, NotSerialized,
			Store(VarPackage(A(0), Int(1), Int(2)), L(0)),
			Return(L(0)),
		),
	},
	"scope": {
		Scope(`\_SB`,
			Device("PCI9",
				Name("_ADR", Int(0x00100000)),
				Device("DIAG", Name("_ADR", Zero)),
			),
		),
		Scope(`\_SB.PCI9.DIAG`, Name("X", One)),
		Scope(`\`, Name("ROOT", Int(2))),
		Scope(`\_TZ`, ThermalZone("TZ1", Name("_TZP", Int(10)))),
		ThermalZone(`\_TZ.TZ2`, Method("_TMP", 0, NotSerialized, Return(Int(3000)))),
		Device(`\_SB.DEV2`, Name("_HID", Str("ACPI0000"))),
		Scope("_SB", Name("REL", One)),
	},
	"method": {
		Method("M000", 0, NotSerialized),
		Method("M001", 1, Serialized, Return(A(0))),
		Method("M002", 7, NotSerialized, Return(A(6))),
		Method("M003", 2, Serialized|SyncLevel(15), Return(A(1))),
		Method("M004", 0, Serialized|SyncLevel(3)),
		Method(`\_SB.M005`, 0, NotSerialized, Return(Zero)),
	},
	"external": {
		If(Zero,
			External(`\_SB.FOO`, MethodObj, 0),
			External(`\_SB.FO2`, MethodObj, 2),
			External(`\_SB.INT`, IntObj, 0),
			External(`\_SB.STR`, StrObj, 0),
			External(`\_SB.BUF`, BuffObj, 0),
			External(`\_SB.PKG`, PkgObj, 0),
			External(`\_SB.FLD`, FieldUnitObj, 0),
			External(`\_SB.DEV`, DeviceObj, 0),
			External(`\_SB.EVT`, EventObj, 0),
			External(`\_SB.MTX`, MutexObj, 0),
			External(`\_SB.OPR`, OpRegionObj, 0),
			External(`\_SB.PWR`, PowerResObj, 0),
			External(`\_SB.TZN`, ThermalZoneObj, 0),
			External(`\_SB.UNK`, UnknownObj, 0),
		),
		Method("M000", 0, NotSerialized,
			Call(`\_SB.FOO`),
			Return(Call(`\_SB.FO2`, One, Str("a"))),
		),
	},
	"opregion": {
		OperationRegion("R000", SystemMemory, Int(0xFE000000), Int(0x10000)),
		OperationRegion("R001", SystemIO, Int(0x505), One),
		OperationRegion("R002", PCIConfig, Zero, Int(0x100)),
		OperationRegion("R003", EmbeddedControl, Zero, Int(0xFF)),
		OperationRegion("R004", SystemCMOS, Zero, Int(0x80)),
		OperationRegion("R005", SMBus, Zero, Int(0x100)),
		OperationRegion("R006", PCIBARTarget, Zero, Int(0x10)),
		OperationRegion("R007", IPMI, Zero, Int(0x10)),
		OperationRegion("R008", GeneralPurposeIO, Zero, Int(0x10)),
		OperationRegion("R009", GenericSerialBus, Zero, Int(0x100)),
		OperationRegion("R010", PCC, Zero, Int(0x10)),
		OperationRegion("R011", FFixedHW, Zero, Int(0x10)),
		Method("MDYN", 2, Serialized,
			OperationRegion("DYN", SystemMemory, A(0), A(1)),
			Store(Int(0x1000), L(0)),
			OperationRegion("DYN2", SystemMemory, L(0), Int(0x40)),
		),
	},
	"field": {
		OperationRegion("OPR0", SystemMemory, Int(0xFE000000), Int(0x1000)),
		Field("OPR0", AnyAcc, NoLock, Preserve,
			FieldUnit("F062", 62),
			FieldUnit("F063", 63),
			FieldUnit("F064", 64),
			Offset(0x20),
			FieldUnit("X", 8),
			Offset(0x21),
			FieldUnit("Y", 1),
			Reserved(7),
			FieldUnit("Z", 0x1000),
			FieldUnit("W", 0xFFF),
		),
		Field("OPR0", DWordAcc, Lock, WriteAsOnes,
			Offset(0x400),
			FieldUnit("D000", 32),
			FieldUnit("D001", 32),
		),
		Field("OPR0", ByteAcc, NoLock, WriteAsZeros,
			FieldUnit("B000", 8),
			AccessAs(WordAcc, 0),
			FieldUnit("B001", 16),
			AccessAs(BufferAcc, 0),
			FieldUnit("B002", 0x40),
		),
		Field("OPR0", WordAcc, Lock, Preserve,
			Offset(0x800),
			Reserved(4),
			FieldUnit("W000", 4),
		),
		Field("OPR0", QWordAcc, NoLock, Preserve, Offset(0x900), FieldUnit("Q000", 64)),
		Field("OPR0", BufferAcc, NoLock, Preserve, Offset(0xA00), FieldUnit("U000", 0x100)),
	},
	"fieldwide": {
		OperationRegion("OPR0", SystemMemory, Int(0xFE000000), Int(0x10000000)),
		Field("OPR0", AnyAcc, NoLock, Preserve, FieldUnit("W", MaxFieldWidth)),
	},
	"more": {
		OperationRegion("IDXR", SystemIO, Int(0x510), Int(2)),
		Field("IDXR", ByteAcc, NoLock, Preserve, FieldUnit("INDX", 8), FieldUnit("DATA", 8)),
		IndexField("INDX", "DATA", ByteAcc, NoLock, Preserve, Offset(0x10), FieldUnit("IF00", 8), FieldUnit("IF01", 16)),
		OperationRegion("BNKR", SystemMemory, Int(0xFED00000), Int(0x100)),
		Field("BNKR", ByteAcc, NoLock, Preserve, FieldUnit("BANK", 8)),
		BankField("BNKR", "BANK", Int(2), DWordAcc, Lock, WriteAsZeros, Offset(0x20), FieldUnit("BF00", 32)),
		Scope(`\_SB`,
			Processor("CPU0", 0, 0, 0, Name("_HID", Str("ACPI0007"))),
			Processor("CPU1", 1, 0xB010, 6, Name("_HID", Str("ACPI0007"))),
		),
		Name("PKG0", Package(One, Int(5), Int(9))),
		Name("V1", Zero),
		Method("M000", 1, NotSerialized,
			Store(Match(N("PKG0"), MGT, Int(4), MLT, Int(8), Zero), N("V1")),
			Store(Match(N("PKG0"), MTR, Zero, MEQ, A(0), One), N("V1")),
			Mid(Str("hello"), One, Int(3), N("V1")),
			Store(Mid(A(0), Zero, Int(2), nil), N("V1")), // here iasl does not fold the store into the target
			ToString(Buffer([]byte{0x41, 0x42, 0}), Ones, N("V1")),
			ToString(A(0), Int(2), N("V1")),
			If(LEqual(A(0), Int(0x99)), Fatal(1, 0x12345678, A(0))),
			Return(N("V1")),
		),
	},
	"control": {
		Name("CNT", Zero),
		Method("M000", 1, NotSerialized,
			If(A(0), Store(One, N("CNT"))),
			If(LEqual(A(0), Int(2)), Store(Int(2), N("CNT"))).Else(Store(Int(3), N("CNT"))),
			func() Term {
				top := If(LEqual(A(0), Int(4)), Store(Int(4), N("CNT")))
				top.ElseIf(LEqual(A(0), Int(5)), Store(Int(5), N("CNT"))).
					ElseIf(LEqual(A(0), Int(6)), Store(Int(6), N("CNT"))).
					Else(Store(Int(7), N("CNT")))
				return top
			}(),
			Store(Zero, L(0)),
			While(LLess(L(0), Int(0x10)),
				Increment(L(0)),
				If(LEqual(L(0), Int(8)), Continue()),
				If(LEqual(L(0), Int(0x0C)), Break()),
				Noop(),
			),
			While(One, Break()),
			Return(L(0)),
		),
	},
	"arith": {
		Name("VAL", Int(0x10)),
		Name("V1", Zero), Name("V2", Zero), Name("V3", Zero), Name("V4", Zero),
		Name("V5", Zero), Name("V6", Zero), Name("V7", Zero),
		Method("M000", 2, NotSerialized,
			Store(A(0), L(0)),
			Store(Int(0x1234), N("VAL")),
			Add(A(0), A(1), L(1)),
			// ASL+ "Local2 = Add (Arg0, One)": iasl folds the store into the target.
			Add(A(0), One, L(2)),
			Subtract(A(0), A(1), L(3)),
			Multiply(A(0), Int(3), L(4)),
			Mod(A(0), Int(7), L(5)),
			And(A(0), Int(0xFF00), L(6)),
			Or(A(0), Int(0x80000000), L(7)),
			Xor(L(1), L(2), N("V1")),
			ShiftLeft(L(3), Int(0x10), N("V2")),
			ShiftRight(L(4), Int(8), N("V3")),
			Nand(L(5), L(6), N("V4")),
			Nor(L(7), A(1), N("V5")),
			Not(A(0), N("V6")),
			Not(A(1), N("V7")), // "V7 = Not (Arg1)"
			Increment(L(0)),
			Decrement(N("VAL")),
			Divide(A(0), Int(10), N("V1"), N("V2")),
			Divide(A(0), Int(10), nil, N("V3")),
			Concatenate(Str("a"), Str("b"), N("V4")),
			FindSetLeftBit(A(0), N("V5")),
			FindSetRightBit(A(0), N("V6")),
			CopyObject(A(1), N("V7")),
			ToInteger(Str("0x10"), N("V1")),
			ToBuffer(A(0), N("V2")),
			ToHexString(A(0), N("V3")),
			ToDecimalString(A(0), N("V4")),
			Return(L(0)),
		),
	},
	"logic": {
		Method("M000", 2, NotSerialized,
			Store(LEqual(A(0), A(1)), L(0)),
			Store(LNot(A(0)), L(1)),
			Store(LLess(A(0), A(1)), L(2)),
			Store(LGreater(A(0), A(1)), L(3)),
			Store(LAnd(A(0), A(1)), L(4)),
			Store(LOr(A(0), A(1)), L(5)),
			Store(LNotEqual(A(0), A(1)), L(6)),
			Store(LLessEqual(A(0), A(1)), L(7)),
			Store(LGreaterEqual(A(0), L(7)), L(0)),
			Return(LAnd(L(0), LOr(L(1), LAnd(L(2), LAnd(L(3), LAnd(L(4), LAnd(L(5), L(6)))))))),
		),
	},
	"misc": {
		Mutex("MTX0", 0),
		Mutex("MTX1", 15),
		Event("EVT0"),
		Name("BUFF", BufferN(Int(0x10), nil)),
		Name("PKG0", Package(One, Int(2))),
		Name("VAL0", Int(5)),
		Name("V1", Zero),
		Alias("VAL0", "VAL1"),
		PowerResource("PWR0", 0, 0,
			Method("_STA", 0, NotSerialized, Return(One)),
			Method("_ON", 0, NotSerialized),
			Method("_OFF", 0, NotSerialized),
		),
		PowerResource("PWR1", 5, 0x1234,
			Method("_STA", 0, NotSerialized, Return(Zero)),
			Method("_ON", 0, NotSerialized),
			Method("_OFF", 0, NotSerialized),
		),
		Device("DEV0", Name("_HID", Str("ACPI0000"))),
		Method("M000", 0, Serialized,
			Store(Acquire(N("MTX0"), 0xFFFF), L(0)),
			Store(Acquire(N("MTX1"), 0x64), N("V1")),
			Release(N("MTX1")),
			Release(N("MTX0")),
			Notify(N("DEV0"), Int(0x80)),
			Notify(N(`\_SB`), L(0)),
			Store(Timer(), L(1)),
			Store(Revision(), L(2)),
			Store(L(1), Debug()),
			Sleep(Int(10)),
			Stall(Int(0x32)),
			Signal(N("EVT0")),
			Reset(N("EVT0")),
			Store(Wait(N("EVT0"), Int(0x10)), N("V1")),
			Store(CondRefOf(N(`\_SB.DEV9`), L(5)), N("V1")),
			Store(CondRefOf(N("VAL0"), nil), N("V1")),
			Store(ObjectTypeOf(N("VAL0")), N("V1")),
			Store(SizeOf(N("BUFF")), N("V1")),
			Store(RefOf(N("VAL0")), L(0)),
			Store(DerefOf(L(0)), N("V1")),
			Index(N("PKG0"), One, N("V1")), // "V1 = Index (PKG0, One)"
			Index(N("PKG0"), Zero, N("V1")),
			Store(DerefOf(Index(N("PKG0"), One, nil)), L(4)),
			Store(Int(0x55), Index(N("BUFF"), Int(2), nil)),
			Return(sum(L(4), L(2), L(5))),
		),
	},
	"createfield": {
		Name("BUFF", BufferN(Int(0x20), nil)),
		Method("M000", 1, Serialized,
			CreateDWordField(N("BUFF"), Zero, "CDW0"),
			CreateWordField(N("BUFF"), Int(4), "CW00"),
			CreateByteField(N("BUFF"), Int(6), "CB00"),
			CreateQWordField(N("BUFF"), Int(8), "CQW0"),
			CreateBitField(N("BUFF"), Int(0x80), "CBT0"),
			CreateField(N("BUFF"), Int(0x88), Int(0x0C), "CF00"),
			CreateField(A(0), A(0), One, "CF01"),
			CreateDWordField(A(0), Int(0x10), `\CDW1`),
			Return(sum(N("CDW0"), N("CW00"), N("CB00"), N("CQW0"), N("CBT0"), N("CF00"), N("CF01"))),
		),
	},
	"call": {
		Method("M000", 0, NotSerialized, Return(One)),
		Method("M001", 1, NotSerialized, Return(A(0))),
		Method("M007", 7, NotSerialized, Return(sum(A(0), A(1), A(2), A(3), A(4), A(5), A(6)))),
		Scope(`\_SB`, Method("SBM0", 2, NotSerialized, Return(sum(A(0), A(1))))),
		Method("MAIN", 0, NotSerialized,
			Call("M000"),
			Store(Call("M001", Int(5)), L(0)),
			Store(Call("M007", Zero, One, Int(2), Int(3), Int(4), Int(5), L(0)), L(1)),
			Store(Call(`\_SB.SBM0`, L(0), L(1)), L(2)),
			Store(Call(`\_OSI`, Str("Linux")), L(3)),
			If(Call(`\_OSI`, Str("Windows 2015")), Store(Int(7), L(3))),
			Return(sum(L(2), L(3))),
		),
	},
	"localarg": {
		Method("M000", 7, NotSerialized,
			Store(A(0), L(0)), Store(A(1), L(1)), Store(A(2), L(2)), Store(A(3), L(3)),
			Store(A(4), L(4)), Store(A(5), L(5)), Store(A(6), L(6)), Store(L(6), L(7)),
			Return(sum(L(0), L(1), L(2), L(3), L(4), L(5), L(7))),
		),
	},
	"names": {
		Name(`\RT00`, One),
		Name("AB", Int(2)),
		Name("A", Int(3)),
		Name("A1", Int(4)),
		Scope(`\_SB`,
			Device("PCI9",
				Name("_ADR", Zero),
				Name("PX", Int(5)),
				Device("DIAG",
					Name("_ADR", Int(0x00100000)),
					Name("DX", Int(6)),
					Method("M000", 0, NotSerialized,
						Store(N("DX"), L(0)),
						Store(N("^^PX"), L(1)),
						Store(N("^^^SBX"), L(2)),
						Store(N(`\_SB.PCI9.DIAG.DX`), L(3)),
						Store(N(`\_SB.PCI9.PX`), L(4)),
						Store(N("^DX"), L(5)),
						Store(N(`\RT00`), L(6)),
						Return(sum(L(0), L(1), L(2), L(3), L(4), L(5), L(6))),
					),
				),
			),
			Name("SBX", Int(7)),
			Scope("PCI9.DIAG", Name("DY", Int(8))),
		),
		Scope("_SB.PCI9", Name("PY", Int(9))),
		Scope(`\`, Name("RX", Int(10))),
		Method("M001", 0, NotSerialized, Return(Call(`\_SB.PCI9.DIAG.M000`))),
	},
}

// compileASL runs iasl on src and returns the whole table it produced.
func compileASL(t *testing.T, iasl, src string) []byte {
	t.Helper()
	dir := t.TempDir()
	prefix := filepath.Join(dir, "out")
	args := append([]string{}, iaslFlags...)
	// A golden file may name warnings it cannot avoid (legacy constructs):
	// "iasl-ignore-warning: 3168" passes "-vw 3168" to iasl.
	text, err := os.ReadFile(src)
	require.NoError(t, err)
	for _, m := range regexp.MustCompile(`iasl-ignore-warning: (\d+)`).FindAllSubmatch(text, -1) {
		args = append(args, "-vw", string(m[1]))
	}
	args = append(args, "-p", prefix, src)
	out, err := exec.Command(iasl, args...).CombinedOutput()
	require.NoError(t, err, "iasl %s:\n%s", src, out)
	m := regexp.MustCompile(`(\d+) Errors, (\d+) Warnings`).FindSubmatch(out)
	require.NotNil(t, m, "iasl summary line missing:\n%s", out)
	require.Equal(t, "0", string(m[1]), "iasl errors:\n%s", out)
	require.Equal(t, "0", string(m[2]), "iasl warnings (golden ASL must compile cleanly):\n%s", out)
	aml, err := os.ReadFile(prefix + ".aml")
	require.NoError(t, err)
	return aml
}

func tableBody(t *testing.T, table []byte) []byte {
	t.Helper()
	require.GreaterOrEqual(t, len(table), tableHeaderLen, "table shorter than its header")
	n := int(table[4]) | int(table[5])<<8 | int(table[6])<<16 | int(table[7])<<24
	require.Equal(t, len(table), n, "table length field")
	return table[tableHeaderLen:]
}

func TestGoldenAgainstIasl(t *testing.T) {
	dir := filepath.Join(fixtures.Dir(), "aml")
	srcs, err := filepath.Glob(filepath.Join(dir, "*.asl"))
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, src := range srcs {
		name := strings.TrimSuffix(filepath.Base(src), ".asl")
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			terms, ok := goldenCases[name]
			require.True(t, ok, "%s has no builder expression in goldenCases", src)
			got, err := Encode(terms...)
			require.NoError(t, err)

			amlPath := filepath.Join(dir, name+".aml")
			var iasl string
			if *update {
				iasl = fixtures.RequireTool(t, "iasl")
				require.NoError(t, os.WriteFile(amlPath, compileASL(t, iasl, src), 0o644))
			}
			stored, err := os.ReadFile(amlPath)
			require.NoError(t, err, "expected bytes missing; run go test ./aml -run Golden -update")
			want := tableBody(t, stored)
			requireSameAML(t, want, got)

			if _, err := exec.LookPath("iasl"); err == nil || fixtures.InCI() {
				iasl = fixtures.RequireTool(t, "iasl")
				fresh := compileASL(t, iasl, src)
				require.Equal(t, hex.EncodeToString(stored), hex.EncodeToString(fresh),
					"%s is stale: iasl now produces different bytes for %s (run -update)", amlPath, src)
			}
		})
	}
	var names []string
	for name := range goldenCases {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		require.True(t, seen[name], "goldenCases[%q] has no fixtures/aml/%s.asl", name, name)
	}
}

// requireSameAML compares two AML byte strings and reports the first
// differing offset with context.
func requireSameAML(t *testing.T, want, got []byte) {
	t.Helper()
	if bytes.Equal(want, got) {
		return
	}
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	lo := max(0, i-8)
	t.Fatalf("AML differs at body offset %d (0x%X): want %d bytes, got %d\nwant[%d:]: % X\ngot [%d:]: % X",
		i, i, len(want), len(got), lo, want[lo:min(len(want), i+16)], lo, got[lo:min(len(got), i+16)])
}
