package gdbstub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestEncodeDecode(t *testing.T) {
	require.Equal(t, "$g#67", string(Encode("g")))
	require.Equal(t, "$a}\x03b#", string(Encode("a#b")[:6]))
	s, err := Decode([]byte("a}\x03b0* "), 0) // escape, then '0' repeated 3 more times (' '=32, 32-29=3)
	require.NoError(t, err)
	require.Equal(t, "a#b0000", s)
	_, err = Decode([]byte("abc}"), 10)
	var pe *ProtocolError
	require.True(t, errors.As(err, &pe))
	require.Equal(t, int64(13), pe.Offset)
	_, err = Decode([]byte("*!"), 0)
	require.ErrorContains(t, err, "run-length marker")
	_, err = Decode([]byte("a*\x01"), 0)
	require.ErrorContains(t, err, "count")
}

func TestParseSupported(t *testing.T) {
	f := ParseSupported("PacketSize=1000;qXfer:features:read+;vContSupported+;multiprocess-;x")
	require.Equal(t, map[string]string{"PacketSize": "1000", "qXfer:features:read": "+", "vContSupported": "+", "multiprocess": "-", "x": ""}, f)
}

const targetXML = `<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">
<target><architecture>i386:x86-64</architecture><xi:include href="core.xml"/></target>`

const coreXML = `<feature name="org.gnu.gdb.i386.core">
<reg name="rax" bitsize="64" type="int64"/><reg name="eflags" bitsize="32" type="i386_eflags"/>
<reg name="cs" bitsize="32" type="int32"/><reg name="st0" bitsize="80" type="i387_ext" regnum="10"/></feature>`

func TestParseLayoutFollowsIncludes(t *testing.T) {
	files := map[string]string{"target.xml": targetXML, "core.xml": coreXML}
	regs, err := ParseLayout("target.xml", func(n string) ([]byte, error) {
		s, ok := files[n]
		if !ok {
			return nil, fmt.Errorf("no %s", n)
		}
		return []byte(s), nil
	})
	require.NoError(t, err)
	require.Len(t, regs, 4)
	require.Equal(t, Register{Name: "rax", BitSize: 64, Regnum: 0, Type: "int64", Feature: "org.gnu.gdb.i386.core"}, regs[0])
	require.Equal(t, 2, regs[2].Regnum)
	require.Equal(t, 10, regs[3].Regnum)

	_, err = ParseLayout("a", func(string) ([]byte, error) { return []byte(`<xi:include href="a"/>`), nil })
	require.ErrorContains(t, err, "nested deeper")
	_, err = ParseLayout("a", func(string) ([]byte, error) { return []byte(`<reg name="x" bitsize="7"/>`), nil })
	require.ErrorContains(t, err, `register "x": bad bitsize "7"`)
}

func TestDecodeRegisters(t *testing.T) {
	layout := []Register{{Name: "rax", BitSize: 64}, {Name: "eflags", BitSize: 32}, {Name: "cs", BitSize: 32}, {Name: "fs", BitSize: 32}}
	v, err := DecodeRegisters("0100000000000080"+"46020000"+"xxxxxxxx", layout)
	require.NoError(t, err)
	require.Equal(t, "8000000000000001", v[0].Hex)
	require.Equal(t, "00000246", v[1].Hex)
	require.True(t, v[2].Unavailable)
	require.True(t, v[3].Unavailable, "beyond the reply")
	_, err = DecodeRegisters("abc", layout)
	require.ErrorContains(t, err, "odd number")
	_, err = DecodeRegisters("zz00000000000000", layout)
	require.ErrorContains(t, err, "register rax")
}

// TestClientAgainstScriptedStub checks framing, acks, checksums and the
// unsolicited stop reply over a real socket pair (QEMU is the real test:
// TestQEMUGdbstub; this covers the malformed replies QEMU never sends).
func TestClientAgainstScriptedStub(t *testing.T) {
	ln, err := net.Listen("unix", t.TempDir()+"/s")
	require.NoError(t, err)
	defer ln.Close()
	a, err := net.Dial("unix", ln.Addr().String())
	require.NoError(t, err)
	defer a.Close()
	b, err := ln.Accept()
	require.NoError(t, err)
	c := NewClient(a)
	go func() {
		var seen []byte
		buf := make([]byte, 256)
		waitFor := func(s string) {
			for !bytes.Contains(seen, []byte(s)) {
				n, err := b.Read(buf)
				if err != nil {
					return
				}
				seen = append(seen, buf[:n]...)
			}
			seen = seen[bytes.Index(seen, []byte(s))+len(s):]
		}
		b.Write([]byte("$T02thread:01;#04")) // unsolicited, as QEMU on attach
		waitFor("$?#3f")
		b.Write([]byte("+$T05thread:01;#07"))
		waitFor("$g#67")
		b.Write([]byte("+$bad#00"))
		b.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := c.StopReason(ctx)
	require.NoError(t, err)
	require.Equal(t, "T05thread:01;", p)
	require.Equal(t, []string{"T02thread:01;"}, c.Unsolicited)
	_, err = c.Command(ctx, "g")
	var pe *ProtocolError
	require.True(t, errors.As(err, &pe), "bad checksum: %v", err)
	require.Contains(t, pe.Msg, "checksum 00")
}

// FuzzDecode: the packet decoders never panic and never exceed MaxPacket.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("a}\x03b0* "))
	f.Add([]byte("0100000000000080xxxx"))
	f.Add([]byte(coreXML))
	layout := []Register{{Name: "rax", BitSize: 64}, {Name: "eflags", BitSize: 32}}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b, 0)
		if err == nil && len(s) > MaxPacket {
			t.Fatalf("decoded %d bytes", len(s))
		}
		DecodeRegisters(string(b), layout) //nolint:errcheck // must not panic
		ParseLayout("t", func(string) ([]byte, error) { return b, nil })
		var sum byte
		for _, ch := range b {
			sum += ch
		}
		cl := NewClient(&fakeConn{r: bytes.NewReader([]byte(fmt.Sprintf("$%s#%02x", b, sum)))})
		cl.ReadPacket() //nolint:errcheck // must not panic
	})
}

type fakeConn struct {
	net.Conn
	r *bytes.Reader
}

func (f *fakeConn) Read(p []byte) (int, error)  { return f.r.Read(p) }
func (f *fakeConn) Write(p []byte) (int, error) { return len(p), nil }
