package aml

import (
	"testing"
	"time"
)

// diagFull builds the tree of fixtures/aml/diagfull.asl: shaped like the
// diagnostic SSDT with extras (an External, a Device with _ADR, _STA and an
// info package, a PCI_Config region + Field, two methods with dynamic
// SystemMemory regions, a ThermalZone with _TMP/_TZP/_CRT/_PSV...), about
// 1 KiB encoded and more nodes than diagSized.
func diagFull() []Term {
	const (
		vdid = NameString("VDID")
		cmds = NameString("CMDS")
		bar2 = NameString("BAR2")
		bar3 = NameString("BAR3")
		boot = NameString("BOOT")
		seq  = NameString("SEQ")
		magc = NameString("MAGC")
		tcnt = NameString("TCNT")
		bcnt = NameString("BCNT")
		mseq = NameString("MSEQ")
		mack = NameString("MACK")
		mcmd = NameString("MCMD")
		marg = NameString("MARG")
		mres = NameString("MRES")
	)
	u32 := func(name string) FieldElement { return FieldUnit(name, 32) }
	return []Term{
		If(Zero, External(`\_SB.PCI0`, DeviceObj, 0)),
		Scope(`\_SB.PCI0`,
			Device("DIAG",
				Name("_ADR", Int(0x00100000)),
				OperationRegion("PCFG", PCIConfig, Zero, Int(0x40)),
				Field("PCFG", DWordAcc, NoLock, Preserve,
					u32("VDID"), u32("CMDS"), Offset(0x18), u32("BAR2"), u32("BAR3")),
				Name("INFO", PackageN(4,
					Str("acpidiag diagnostic channel"),
					One,
					Int(0x10000),
					BufferN(Int(0x10), []byte{0x41, 0x44, 0x47, 0x31}),
				)),
				Method("_STA", 0, NotSerialized,
					If(LEqual(vdid, Int(0x11101AF4)), Return(Int(0x0F))),
					Return(Zero),
				),
				Method("CLR", 2, Serialized,
					OperationRegion("APPR", SystemMemory, Arg(0), Int(0x100)),
					Field("APPR", DWordAcc, NoLock, Preserve, Offset(0x80),
						u32("APP0"), u32("APP1"), u32("APP2"), u32("APP3"),
						u32("APP4"), u32("APP5"), u32("APP6"), u32("APP7")),
					Store(Arg(1), NameString("APP0")),
					Store(Arg(1), NameString("APP1")),
					Store(Arg(1), NameString("APP2")),
					Store(Arg(1), NameString("APP3")),
					Store(Arg(1), NameString("APP4")),
					Store(Arg(1), NameString("APP5")),
					Store(Arg(1), NameString("APP6")),
					Store(Arg(1), NameString("APP7")),
					Return(One),
				),
				Name("BOOT", Zero),
				Method("TICK", 1, Serialized,
					If(LNotEqual(vdid, Int(0x11101AF4)), Return(Zero)),
					If(LNotEqual(bar3, Zero), Return(Zero)),
					And(bar2, Int(0xFFFFFFF0), Local(0)),
					If(LEqual(Local(0), Zero), Return(Zero)),
					If(LEqual(And(cmds, Int(2), nil), Zero), Or(cmds, Int(2), cmds)),
					OperationRegion("SHM", SystemMemory, Local(0), Int(0x1000)),
					Field("SHM", DWordAcc, NoLock, Preserve,
						u32("MAGC"), u32("VERS"), u32("HDRS"), u32("RSIZ"), u32("SEQ"), u32("TCNT"),
						u32("BCNT"), u32("PERI"), u32("TIML"), u32("ECHO"), u32("OSID"), u32("REVS"),
						Offset(0x40), u32("HSTM"), u32("MCMD"), u32("MARG"), u32("MSEQ"),
						Offset(0x60), u32("MACK"), u32("MRES")),
					Add(seq, One, seq),
					If(LNotEqual(magc, Int(0x31474441)),
						Store(One, NameString("VERS")),
						Store(Int(0x80), NameString("HDRS")),
						Store(Int(0x1000), NameString("RSIZ")),
						Store(Zero, tcnt),
						Store(Zero, bcnt),
						Store(Int(0x31474441), magc),
					),
					If(LEqual(boot, Zero),
						Store(One, boot),
						Add(bcnt, One, bcnt),
						Store(Zero, tcnt),
					),
					Add(tcnt, One, tcnt),
					Store(Arg(0), NameString("PERI")),
					Store(Timer(), Local(1)),
					And(Local(1), Int(0xFFFFFFFF), NameString("TIML")),
					Store(NameString("HSTM"), NameString("ECHO")),
					Store(Revision(), NameString("REVS")),
					Store(Zero, Local(2)),
					If(Call(`\_OSI`, Str("Linux")), Or(Local(2), One, Local(2))),
					If(Call(`\_OSI`, Str("Windows 2015")), Or(Local(2), Int(2), Local(2))),
					Store(Local(2), NameString("OSID")),
					If(LNotEqual(mseq, mack),
						func() Term {
							t := If(LEqual(mcmd, One), Store(marg, mres))
							t.ElseIf(LEqual(mcmd, Int(2)), Add(marg, One, mres)).Else(Store(Ones, mres))
							return t
						}(),
						Store(mseq, mack),
					),
					Store(Zero, Local(3)),
					While(LLess(Local(3), Int(4)), Increment(Local(3))),
					ShiftLeft(Local(3), Int(8), Local(4)),
					Subtract(Local(4), Local(3), Local(5)),
					Add(seq, One, seq),
					Return(Local(5)),
				),
			),
		),
		Scope(`\_TZ`,
			ThermalZone("DIAG",
				Name("_TZP", Int(10)),
				Name("_TC1", Int(4)),
				Name("_TC2", Int(3)),
				Name("_TSP", Int(0x96)),
				Name("DESC", Str("acpidiag heartbeat zone: _TMP ticks the shared region every _TZP")),
				Method("_PSV", 0, NotSerialized, Return(Int(0x0E2C))),
				Method("_CRT", 0, NotSerialized, Return(Int(0x0E94))),
				Method("_TMP", 0, Serialized,
					Call(`\_SB.PCI0.DIAG.TICK`, Int(10)),
					Return(Int(0x0BB8)),
				),
			),
		),
	}
}

func init() {
	goldenCases["diagfull"] = diagFull()
	goldenCases["diagsized"] = diagSized()
}

// BenchmarkEncodeDiagSized builds and encodes a table body the size of the
// diagnostic SSDT. Target: <= 20 us and <= 100 allocations per op.
func BenchmarkEncodeDiagSized(b *testing.B) {
	b.ReportAllocs()
	var n int
	cpu := processCPU()
	for b.Loop() {
		out, err := Encode(diagSized()...)
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	reportCPU(b, cpu)
	b.ReportMetric(float64(n), "bytes/table")
}

// reportCPU adds the process CPU time per op since start (see processCPU).
func reportCPU(b *testing.B, start time.Duration) {
	if d := processCPU() - start; d > 0 && start > 0 {
		b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkEncodeDiagFull builds and encodes the larger diagfull tree.
func BenchmarkEncodeDiagFull(b *testing.B) {
	b.ReportAllocs()
	var n int
	cpu := processCPU()
	for b.Loop() {
		out, err := Encode(diagFull()...)
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	reportCPU(b, cpu)
	b.ReportMetric(float64(n), "bytes/table")
}

// BenchmarkEncodeOnlyDiagSized encodes an already built tree (the cost of
// Encode alone).
func BenchmarkEncodeOnlyDiagSized(b *testing.B) {
	b.ReportAllocs()
	terms := diagSized()
	buf := make([]byte, 0, 2048)
	cpu := processCPU()
	for b.Loop() {
		out, err := AppendEncode(buf[:0], terms...)
		if err != nil {
			b.Fatal(err)
		}
		buf = out
	}
	reportCPU(b, cpu)
}

func TestDiagTreesAreAboutOneKiB(t *testing.T) {
	for name, terms := range map[string][]Term{"diagsized": diagSized(), "diagfull": diagFull()} {
		out, err := Encode(terms...)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) < 800 || len(out) > 1200 {
			t.Errorf("%s body is %d bytes, want about 1 KiB", name, len(out))
		}
	}
}
