package aml

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// builtTree is a table body written with the encoder, using most of its
// constructors.
func builtTree(t testing.TB) []byte {
	t.Helper()
	big := make([]byte, 300) // a Buffer whose PkgLength needs 2 bytes
	for i := range big {
		big[i] = byte(i)
	}
	body, err := Encode(
		External("\\_SB.EXTM", MethodObj, 2),
		Scope("\\_SB",
			Device("PCI0.DIAG",
				Name("_ADR", Int(0x00100000)),
				Name("_HID", Str("ACPI0000")),
				Name("BUF0", Buffer(big)),
				Name("PKG0", Package(Int(1), Str("x"), Package(Int(0xFFFF)))),
				OperationRegion("REG0", SystemMemory, Int(0xFE000000), Int(0x10000)),
				Field("REG0", DWordAcc, NoLock, Preserve,
					FieldUnit("MAGC", 32), Offset(8), FieldUnit("TICK", 32), Reserved(3), FieldUnit("FLG0", 1)),
				Mutex("MTX0", 0),
				Method("TICK", 1, Serialized,
					Acquire(NameString("MTX0"), 0xFFFF),
					Store(Add(NameString("TICK"), Int(1), nil), NameString("TICK")),
					If(LEqual(Arg(0), Int(2)),
						Store(Timer(), Local(0)),
					).Else(
						Store(Call("\\_SB.EXTM", Arg(0), Int(3)), Local(1)),
					),
					While(LLess(Local(2), Int(10)), Increment(Local(2)), Break()),
					Release(NameString("MTX0")),
					Return(Local(0)),
				),
				Method("CALL", 0, NotSerialized,
					Return(Call("TICK", Int(7))),
				),
			),
		),
		ThermalZone("\\_TZ.DIAG",
			Name("_TZP", Int(10)),
			Method("_TMP", 0, Serialized, Call("\\_SB.PCI0.DIAG.TICK", Int(1)), Return(Int(3000))),
		),
	)
	require.NoError(t, err)
	return body
}

func TestDecodeEncoderOutputRoundTrip(t *testing.T) {
	body := builtTree(t)
	root, err := Decode(body)
	require.NoError(t, err)
	again, err := Encode(root)
	require.NoError(t, err)
	require.Equal(t, body, again)

	var a, b strings.Builder
	require.NoError(t, Format(&a, root))
	root2, err := Decode(again)
	require.NoError(t, err)
	require.NoError(t, Format(&b, root2))
	require.Equal(t, a.String(), b.String(), "printing is stable")
	txt := a.String()
	for _, want := range []string{
		"External (\\_SB.EXTM, MethodObj)  // 2 Arguments",
		"Device (PCI0.DIAG)",
		"Method (TICK, 1, Serialized)",
		"Store (\\_SB.EXTM (Arg0, 0x03), Local1)",
		"Return (TICK (0x07))",
		"\\_SB.PCI0.DIAG.TICK (One)",
		"TICK,   32,  // at byte 0x08",
		"FLG0,   1  // at byte 0x0C bit 3",
		"Acquire (MTX0, 0xFFFF)",
		"ThermalZone (\\_TZ.DIAG)",
	} {
		assert.Contains(t, txt, want)
	}
}

func TestDecodeOffsets(t *testing.T) {
	body := builtTree(t)
	root, err := Decode(body)
	require.NoError(t, err)
	// Every node's bytes re-encode to exactly body[Off:Off+Len].
	var walk func(n Node)
	count := 0
	walk = func(n Node) {
		count++
		enc, err := n.AppendAML(nil)
		require.NoError(t, err)
		require.Equal(t, body[n.Off():n.Off()+n.Len()], enc, "%s at %#x", n.Op(), n.Off())
		for _, a := range n.Args() {
			walk(a)
		}
		for _, c := range n.Children() {
			walk(c)
		}
	}
	walk(root)
	assert.Greater(t, count, 60)

	var sb strings.Builder
	require.NoError(t, FormatWith(&sb, root, FormatOptions{Offsets: true, Base: 36}))
	// The External is the first term: offset 0 + 36.
	assert.True(t, strings.HasPrefix(sb.String(), "/* 0x0024 */ External ("), sb.String()[:60])
}

func TestZeroNode(t *testing.T) {
	var n Node
	assert.True(t, n.IsZero())
	_, err := n.AppendAML(nil)
	var ee *EncodeError
	require.ErrorAs(t, err, &ee)
	assert.ErrorIs(t, err, errZeroNode)
	assert.Nil(t, n.Name())
	assert.Nil(t, n.Data())
	assert.Nil(t, n.Bytes())
	assert.Empty(t, n.Args())
	assert.Empty(t, n.Children())
	assert.True(t, n.Arg(0).IsZero())
	assert.Zero(t, n.Value())
	assert.Zero(t, n.PkgBytes())
	_, ok := n.Raw(0)
	assert.False(t, ok)
	assert.Equal(t, "", n.String())
}

func decodeErr(t *testing.T, b []byte) *DecodeError {
	t.Helper()
	root, err := Decode(b)
	require.True(t, root.IsZero())
	var de *DecodeError
	require.True(t, errors.As(err, &de), "want *DecodeError, got %v", err)
	assert.GreaterOrEqual(t, de.Off, 0)
	assert.LessOrEqual(t, de.Off, len(b))
	return de
}

func TestDecodeMalformed(t *testing.T) {
	body := builtTree(t)
	for _, tc := range []struct {
		name string
		in   []byte
		off  int
		msg  string
	}{
		{"unknown opcode", []byte{0xA3, 0x02}, 1, "unknown opcode 0x02"},
		{"unknown ext opcode", []byte{0x5B, 0xFE}, 0, "unknown extended opcode"},
		{"ext prefix at end", []byte{0x5B}, 0, "extended opcode prefix"},
		{"truncated dword", []byte{DWordPrefix, 1, 2}, 0, "needs 4 data bytes"},
		{"string without NUL", []byte{StringPrefix, 'a', 'b'}, 0, "no terminating NUL"},
		{"pkg past end", []byte{ScopeOp, 0x10, '_', 'S', 'B', '_'}, 1, "runs past the end"},
		{"pkg shorter than itself", []byte{ScopeOp, 0x40, 0x00}, 1, "smaller than its own"},
		{"pkg reserved bits", []byte{ScopeOp, 0x70, 0x00, '_', 'S', 'B', '_'}, 1, "reserved bits"},
		{"bad name", []byte{ScopeOp, 0x05, '_', 's', 'B', '_'}, 2, "invalid name segment"},
		{"multi name zero", []byte{ScopeOp, 0x03, '/', 0x00}, 3, "segment count is 0"},
		{"store missing operand", []byte{StoreOp, OneOp}, 2, "term expected"},
		{"field list garbage", []byte{0x5B, 0x81, 0x07, 'R', 'E', 'G', '0', 0x01, 0x7F}, 8, "invalid field list entry"},
		{"method call args past package", append([]byte{MethodOp, 0x0B, 'F', 'O', 'O', '_', 0x01, 0xA4, 'F', 'O', 'O', '_'}, 0x0A, 0x01), 12, "term expected"},
		{"truncated encoder output", body[:len(body)-3], -1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			de := decodeErr(t, tc.in)
			if tc.off >= 0 {
				assert.Equal(t, tc.off, de.Off, de.Error())
			}
			assert.Contains(t, de.Error(), tc.msg)
		})
	}
}

func TestDecodeNestingBomb(t *testing.T) {
	// 10,000 nested LNot: deeper than MaxDecodeDepth.
	b := bytes.Repeat([]byte{LNotOp}, 10000)
	b = append(b, OneOp)
	de := decodeErr(t, b)
	assert.Contains(t, de.Msg, "nested deeper")
	assert.ErrorIs(t, de, ErrTooDeep)
	assert.Equal(t, MaxDecodeDepth, de.Off)

	// Nested Scopes with valid lengths.
	inner := []byte{}
	for i := 0; i < 300; i++ {
		hdr, err := AppendPkgLength([]byte{ScopeOp}, len(inner)+4)
		require.NoError(t, err)
		inner = append(append(hdr, '_', 'S', 'B', '_'), inner...)
	}
	de = decodeErr(t, inner)
	assert.Contains(t, de.Msg, "nested deeper")

	// Just below the cap decodes.
	ok := append(bytes.Repeat([]byte{LNotOp}, MaxDecodeDepth-1), OneOp)
	_, err := Decode(ok)
	require.NoError(t, err)
}

func TestNodeAccessors(t *testing.T) {
	// Processor (\_PR.CPU0, 0x01, 0x00000410, 0x06) {} and
	// Method (M000, 3, Serialized, 7) { Return (\_SB.PCI0.FOO) }
	body := []byte{
		0x5B, ProcessorOp, 0x11, '\\', '.', '_', 'P', 'R', '_', 'C', 'P', 'U', '0', 0x01, 0x10, 0x04, 0x00, 0x00, 0x06,
		MethodOp, 0x16, 'M', '0', '0', '0', 0x7B, ReturnOp, '\\', '/', 0x03, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'F', 'O', 'O', '_',
	}
	root, err := Decode(body)
	require.NoError(t, err)
	require.Len(t, root.Children(), 2)
	cpu, m := root.Children()[0], root.Children()[1]

	assert.Equal(t, ExtendedOp(ProcessorOp), cpu.Op())
	assert.True(t, cpu.Op().IsExtended())
	assert.Equal(t, "Processor", cpu.Op().String())
	assert.Equal(t, `\_PR.CPU0`, cpu.Name().String())
	assert.Equal(t, []string{"_PR_", "CPU0"}, cpu.Name().Segments())
	for i, want := range []uint64{0x01, 0x410, 0x06} {
		v, ok := cpu.Raw(i)
		assert.True(t, ok)
		assert.Equal(t, want, v, "raw %d", i)
	}
	_, ok := cpu.Raw(3)
	assert.False(t, ok)
	assert.Empty(t, cpu.Args())
	assert.Empty(t, cpu.Children())
	assert.Equal(t, 0, cpu.Off())
	assert.Equal(t, 19, cpu.Len())
	assert.Equal(t, 1, cpu.PkgBytes())

	flags, ok := m.Raw(0)
	require.True(t, ok)
	assert.Equal(t, uint64(0x7B), flags) // 3 args, serialized, sync level 7
	assert.Equal(t, 19, m.Off())
	ret := m.Children()[0]
	assert.Equal(t, "Return", ret.Op().String())
	ref := ret.Args()[0]
	assert.Equal(t, OpNamePath, ref.Op())
	assert.Equal(t, `\_SB.PCI0.FOO`, ref.Name().String())
	assert.Nil(t, ref.Data())
	assert.Nil(t, ret.Name())
	assert.Equal(t, "MethodCall", OpCall.String())
	assert.Equal(t, "Op(0x5B 0xEE)", ExtendedOp(0xEE).String())
	assert.Contains(t, m.String(), "Method (M000, 3, Serialized, 7)")
}

// A subtree of more than skipFar stored nodes is skipped by a binary
// search on the offsets instead of its stored size.
func TestDecodeHugeSubtree(t *testing.T) {
	var stores []Term
	for i := 0; i < skipFar+10; i++ {
		stores = append(stores, Store(Local(0), Local(1)))
	}
	body, err := Encode(Method("BIG", 0, NotSerialized, stores...), Name("AFTR", Int(7)), Method("LAST", 0, NotSerialized))
	require.NoError(t, err)
	root, err := Decode(body)
	require.NoError(t, err)
	kids := root.Children()
	require.Len(t, kids, 3)
	assert.Equal(t, "BIG_", string(kids[0].Name()))
	assert.Len(t, kids[0].Children(), skipFar+10)
	assert.Equal(t, "AFTR", string(kids[1].Name()))
	assert.Equal(t, uint64(7), kids[1].Arg(0).Value())
	assert.Equal(t, "LAST", string(kids[2].Name()))
	again, err := root.AppendAML(nil)
	require.NoError(t, err)
	assert.Equal(t, body, again)
}
