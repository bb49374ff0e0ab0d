package qemuhook

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/qmp"
	"github.com/acpidiag/acpidiag/ssdt"
)

func TestParseRegistersReal(t *testing.T) {
	b, err := os.ReadFile("testdata/info_registers_seabios_smp2.txt")
	require.NoError(t, err)
	regs, err := ParseRegisters(string(b))
	require.NoError(t, err)
	require.Len(t, regs, 2)
	for i, r := range regs {
		assert.Equal(t, i, r.Index)
		assert.True(t, r.HasIP)
		assert.Contains(t, r.Text, "EFL=")
		assert.NotContains(t, r.Text, "CPU#")
	}
	assert.Equal(t, uint64(0xb7b9), regs[0].IP)
	// The texts tile the output after the headers.
	assert.Equal(t, len(b), len("\r\n")+len("CPU#0\r\n")+len(regs[0].Text)+len("CPU#1\r\n")+len(regs[1].Text))

	for in, want := range map[string]string{
		"":                           "no CPU# header",
		"junk\r\nCPU#0\r\n":          "byte 0: text before",
		"CPU#0\nA\nCPU#0\nB\n":       "byte 8: vCPU 0 appears twice",
		"CPU#x\n":                    "bad vCPU header",
		"CPU#99999999999999999\n":    "bad vCPU header",
		"\nCPU#1\nRIP=zz\nCPU#70000": "bad vCPU header",
	} {
		_, err := ParseRegisters(in)
		var re *RegistersError
		require.ErrorAs(t, err, &re, "%q", in)
		assert.Contains(t, err.Error(), want, "%q", in)
	}
}

// FuzzParseRegisters: HMP output holds guest-controlled register values.
func FuzzParseRegisters(f *testing.F) {
	b, err := os.ReadFile("testdata/info_registers_seabios_smp2.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b))
	f.Add("CPU#0\nRIP=ffffffff81000000 RFL=00000246\n")
	f.Fuzz(func(t *testing.T, s string) {
		regs, err := ParseRegisters(s)
		if err != nil {
			return
		}
		total := 0
		seen := map[int]bool{}
		for _, r := range regs {
			if seen[r.Index] || r.Index < 0 || r.Index >= maxCPUs {
				t.Fatalf("bad index %d", r.Index)
			}
			seen[r.Index] = true
			total += len(r.Text)
		}
		if total > len(s) {
			t.Fatalf("texts longer than the input")
		}
	})
}

// TestRegistersAndMemory: a real QEMU whose RAM is the region file (fixed
// placement). Bytes written into the file are what pmemsave and
// dump-guest-memory read back; registers come for every vCPU.
func TestRegistersAndMemory(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	dir := shortTempDir(t)
	rc := ssdt.DefaultConfig()
	rc.Placement, rc.Address = ssdt.PlaceFixed, 0x2000000
	cfg := Config{MemoryMB: 128, SMP: 3, Workdir: dir,
		Channel:   Channel{SSDTPath: testSSDT(t, dir, rc), Region: rc, BackingPath: filepath.Join(dir, "ram")},
		QMPSocket: filepath.Join(dir, "qmp"), Extra: []string{"-S"}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := Start(ctx, cfg, StartOptions{})
	require.NoError(t, err)
	defer p.Kill()
	q := dialTest(t, cfg.QMPSocket, qmp.Options{})

	pattern := bytes.Repeat([]byte("acpidiag-pmem-"), 300)
	f, err := os.OpenFile(cfg.Channel.BackingPath, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(pattern, int64(rc.Address)+0x123)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	got, err := ReadMemory(ctx, q, rc.Address+0x123, uint64(len(pattern)))
	require.NoError(t, err)
	assert.Equal(t, pattern, got)

	_, err = ReadMemory(ctx, q, 0, 0)
	assert.ErrorContains(t, err, "out of range")
	_, err = ReadMemory(ctx, q, 0, MaxReadMemory+1)
	assert.ErrorContains(t, err, "out of range")
	_, err = ReadMemory(ctx, q, ^uint64(0)-10, 100)
	assert.ErrorContains(t, err, "wraps")

	st, err := QueryStatus(ctx, q)
	require.NoError(t, err)
	assert.Equal(t, Status{Running: false, Status: "prelaunch"}, st)
	require.NoError(t, q.Execute(ctx, "cont", nil, nil))
	st, err = QueryStatus(ctx, q)
	require.NoError(t, err)
	assert.True(t, st.Running)

	regs, err := Registers(ctx, q)
	require.NoError(t, err)
	require.Len(t, regs, 3)
	for i, r := range regs {
		assert.Equal(t, i, r.Index)
		assert.True(t, r.HasIP, "vCPU %d: %s", i, r.Text)
	}

	require.NoError(t, InjectNMI(ctx, q))

	dump := filepath.Join(dir, "core.elf")
	require.NoError(t, DumpGuestMemory(ctx, q, dump, ""))
	b, err := os.ReadFile(dump)
	require.NoError(t, err)
	assert.Equal(t, []byte("\x7fELF"), b[:4])
	assert.Greater(t, len(b), 128<<20)
	assert.True(t, bytes.Contains(b, pattern), "the dump holds the bytes written into guest RAM")

	err = DumpGuestMemory(ctx, q, filepath.Join(dir, "nodir", "core"), "")
	assert.Error(t, err)
}

func TestConsoleRing(t *testing.T) {
	a, b := net.Pipe()
	con := NewConsole(a, 16)
	m0 := con.Mark()
	assert.Equal(t, int64(0), m0)
	go func() {
		b.Write([]byte("hello "))
		b.Write([]byte("world, this is longer than sixteen"))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := con.WaitFor(ctx, 0, "sixteen")
	require.NoError(t, err)
	assert.Equal(t, "longer than sixteen"[3:], string(out))
	got, lost := con.Since(0)
	assert.Equal(t, int64(40-16), lost)
	assert.Equal(t, "ger than sixteen", string(got))
	assert.Equal(t, "sixteen", string(con.Tail(7)))
	m := con.Mark()
	assert.Equal(t, int64(40), m)
	go b.Write([]byte("more"))
	out, err = con.WaitQuiet(ctx, m, 50*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, "more", string(out))
	short, c2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer c2()
	_, err = con.WaitFor(short, m, "never")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	b.Close()
	_, err = con.WaitFor(ctx, m, "never")
	assert.ErrorIs(t, err, ErrConsoleClosed)
	con.Close()
}
