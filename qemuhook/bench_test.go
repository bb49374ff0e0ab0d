package qemuhook

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/acpidiag/acpidiag/qmp"
)

func BenchmarkParseRegisters(b *testing.B) {
	raw, err := os.ReadFile("testdata/info_registers_seabios_smp2.txt")
	if err != nil {
		b.Fatal(err)
	}
	// 64 vCPUs worth of real dumps.
	var sb strings.Builder
	sb.WriteString("\r\n")
	text := strings.SplitN(string(raw), "CPU#1\r\n", 2)[1]
	for i := 0; i < 64; i++ {
		sb.WriteString("CPU#" + itoa(i) + "\r\n" + text)
	}
	s := sb.String()
	b.ReportAllocs()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		regs, err := ParseRegisters(s)
		if err != nil || len(regs) != 64 {
			b.Fatal(err, len(regs))
		}
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// BenchmarkConsoleAppend: serial output into the ring (the reader runs for
// the whole life of a VM).
func BenchmarkConsoleAppend(b *testing.B) {
	a, _ := net.Pipe()
	con := NewConsole(a, DefaultConsoleBuffer)
	defer con.Close()
	chunk := bytes.Repeat([]byte("[   12.345678] some kernel line of console output\n"), 20)
	b.ReportAllocs()
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		con.append(chunk)
	}
}

// BenchmarkQMPQueryStatus: one command round trip to a real QEMU.
func BenchmarkQMPQueryStatus(b *testing.B) {
	_, cfg := startIdleQEMU(b, shortTempDir(b))
	q, err := qmp.Dial(context.Background(), cfg.QMPSocket, qmp.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := QueryStatus(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}
