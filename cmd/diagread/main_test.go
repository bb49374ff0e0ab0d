package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/region"
)

// regionImage returns an initialised v1 region (ticks 1, boots 1, period
// periodDs) whose echo and host stamp are set to echo/stamp when non-zero.
func regionImage(size int, periodDs uint32, echo, stamp time.Time) []byte {
	b := make([]byte, size)
	put := func(off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
	put(region.MagicWord.Offset, region.Magic)
	put(region.VersionWord.Offset, region.Version)
	put(region.HeaderSizeWord.Offset, region.HeaderSize)
	put(region.RegionSize.Offset, uint32(size))
	put(region.Seq.Offset, 2)
	put(region.Ticks.Offset, 1)
	put(region.Boots.Offset, 1)
	put(region.Period.Offset, periodDs)
	if !echo.IsZero() {
		ms := uint64(echo.UnixMilli())
		put(region.EchoLo.Offset, uint32(ms))
		put(region.EchoHi.Offset, uint32(ms>>32))
	}
	if !stamp.IsZero() {
		ms := uint64(stamp.UnixMilli())
		put(region.HostStampLo.Offset, uint32(ms))
		put(region.HostStampHi.Offset, uint32(ms>>32))
	}
	return b
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}

func runCapture(ctx context.Context, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// fileGuest imitates the SSDT's tick on a region file from outside (pwrite,
// as another process's mapping would see it): under the seqlock it bumps
// ticks and copies the host stamp into the echo.
type fileGuest struct {
	f       *os.File
	mu      sync.Mutex
	ticks   uint32
	seq     uint32
	ticking bool
	stop    chan struct{}
	done    chan struct{}
}

func startFileGuest(t *testing.T, path string, every time.Duration) *fileGuest {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	g := &fileGuest{f: f, ticks: 1, seq: 2, ticking: true, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-g.stop:
				return
			case <-tk.C:
				g.mu.Lock()
				if g.ticking {
					g.tick()
				}
				g.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { close(g.stop); <-g.done; f.Close() })
	return g
}

func (g *fileGuest) put(off int, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	_, _ = g.f.WriteAt(b[:], int64(off))
}

func (g *fileGuest) tick() {
	var hs [8]byte
	_, _ = g.f.ReadAt(hs[:], int64(region.HostStampLo.Offset))
	g.put(region.Seq.Offset, g.seq+1)
	g.ticks++
	g.put(region.Ticks.Offset, g.ticks)
	g.put(region.TimerLo.Offset, g.ticks*1000)
	g.put(region.EchoLo.Offset, binary.LittleEndian.Uint32(hs[0:]))
	g.put(region.EchoHi.Offset, binary.LittleEndian.Uint32(hs[4:]))
	g.seq += 2
	g.put(region.Seq.Offset, g.seq)
}

func (g *fileGuest) setTicking(on bool) { g.mu.Lock(); g.ticking = on; g.mu.Unlock() }

func TestReadVerdicts(t *testing.T) {
	now := time.Now()
	ctx := context.Background()
	alive := writeFile(t, "alive", regionImage(4096, 10, now.Add(-time.Second), now.Add(-200*time.Millisecond)))
	stale := writeFile(t, "stale", regionImage(4096, 10, now.Add(-time.Minute), now.Add(-200*time.Millisecond)))
	absent := writeFile(t, "absent", make([]byte, 4096))
	bad := regionImage(4096, 10, time.Time{}, time.Time{})
	binary.LittleEndian.PutUint32(bad[region.VersionWord.Offset:], 9)
	corrupt := writeFile(t, "corrupt", bad)

	cases := []struct {
		path  string
		state string
		code  int
	}{
		{alive, "alive", 0}, {stale, "stale", 1}, {absent, "absent", 1}, {corrupt, "corrupt", 1},
	}
	for _, c := range cases {
		t.Run(c.state, func(t *testing.T) {
			code, out, errOut := runCapture(ctx, c.path)
			assert.Equal(t, 0, code, errOut)
			assert.Contains(t, out, "verdict:     "+c.state)
			assert.Contains(t, out, "region:      "+c.path)

			code, out, errOut = runCapture(ctx, "--json", "--fail-unless-alive", c.path)
			assert.Equal(t, c.code, code, errOut)
			var got struct {
				Region  string         `json:"region"`
				Verdict map[string]any `json:"verdict"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &got), out)
			assert.Equal(t, c.path, got.Region)
			assert.Equal(t, c.state, got.Verdict["state"])
		})
	}
	// Flags after the file name work too.
	code, out, _ := runCapture(ctx, alive, "--json", "--k", "5")
	assert.Equal(t, 0, code)
	assert.True(t, json.Valid([]byte(out)))
}

func TestReadWaitsWithoutEcho(t *testing.T) {
	ctx := context.Background()
	// Period 1 ds: stale after K (3) periods = 300 ms without a tick.
	p := writeFile(t, "quiet", regionImage(4096, 1, time.Time{}, time.Time{}))
	code, out, _ := runCapture(ctx, "--wait", "0", "--fail-unless-alive", p)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "verdict:     unknown")
	// A --wait far longer than K periods, so that a loaded host cannot
	// blur the two: stale after 300 ms, not after the minute.
	start := time.Now()
	code, out, _ = runCapture(ctx, "--wait", "60s", p)
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "verdict:     stale")
	assert.Less(t, time.Since(start), 30*time.Second, "stale after K periods, not after --wait")

	// A ticking guest: alive, from observation.
	startFileGuest(t, p, 30*time.Millisecond)
	code, out, _ = runCapture(ctx, "--wait", "5s", "--fail-unless-alive", p)
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "verdict:     alive")
	assert.Contains(t, out, "from observed")
}

func TestReadOffsetInRAMFile(t *testing.T) {
	ram := make([]byte, 64<<10)
	now := time.Now()
	copy(ram[0x8000:], regionImage(4096, 10, now, now))
	p := writeFile(t, "ram", ram)
	code, out, errOut := runCapture(context.Background(), "--offset", "0x8000", "--size", "4096", "--fail-unless-alive", p)
	assert.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "verdict:     alive")
}

func TestReadBadInput(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, make([]byte, 100), 0o644))
	big := regionImage(4096, 10, time.Time{}, time.Time{})
	binary.LittleEndian.PutUint32(big[region.RegionSize.Offset:], 65536)
	bigp := filepath.Join(dir, "big")
	require.NoError(t, os.WriteFile(bigp, big, 0o644))
	ok := writeFile(t, "ok", regionImage(4096, 10, time.Time{}, time.Time{}))
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"no file", nil, "need exactly one REGIONFILE"},
		{"two files", []string{ok, ok}, "need exactly one REGIONFILE"},
		{"missing", []string{filepath.Join(dir, "missing")}, "no such file"},
		{"short", []string{short}, "shorter than the v1 header"},
		{"bad k", []string{"--k", "0", ok}, "--k 0 out of range"},
		{"bad flag", []string{"--nope", ok}, "flag provided but not defined"},
		{"bad offset", []string{"--offset", "zz", ok}, "not a number"},
		{"odd offset", []string{"--offset", "2", ok}, "offset must be a non-negative multiple of 4"},
		{"negative wait", []string{"--wait", "-1s", ok}, "negative"},
		{"watch without files", []string{"watch"}, "need at least one REGIONFILE"},
		{"watch bad interval", []string{"watch", "--interval", "0s", ok}, "--interval 0s must be positive"},
		{"watch short", []string{"watch", short}, "shorter than the v1 header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := runCapture(ctx, c.args...)
			assert.Equal(t, 2, code)
			assert.Contains(t, errOut, c.msg)
		})
	}
	// A hostile region_size is the guest's doing: the region is read and
	// judged corrupt, naming the field.
	code, out, _ := runCapture(ctx, "--json", bigp)
	assert.Equal(t, 0, code)
	assert.Contains(t, out, `"state": "corrupt"`)
	assert.Contains(t, out, `"field": "region_size"`)
	code, out, _ = runCapture(ctx, "help")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "diagread watch")
}

// buildDiagread builds the real binary into a temporary directory.
func buildDiagread(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	return fixtures.BuildCommand(t, "diagread")
}

func TestDiagreadBinaryRead(t *testing.T) {
	bin := buildDiagread(t)
	now := time.Now()
	alive := writeFile(t, "alive", regionImage(65536, 10, now.Add(-500*time.Millisecond), now))
	stale := writeFile(t, "stale", regionImage(65536, 10, now.Add(-time.Hour), now))

	out, err := exec.Command(bin, "--json", "--fail-unless-alive", alive).Output()
	require.NoError(t, err)
	var got readJSON
	require.NoError(t, json.Unmarshal(out, &got))
	assert.Equal(t, "alive", got.Verdict.State.String())

	err = exec.Command(bin, "--fail-unless-alive", stale).Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 1, ee.ExitCode())

	err = exec.Command(bin, filepath.Join(t.TempDir(), "missing")).Run()
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 2, ee.ExitCode())

	// The real AML's region images decode.
	for _, f := range []string{"acpiexec_q35_ivshmem_mailbox_ping.bin", "acpiexec_q35_ivshmem_tick2.bin"} {
		out, err := exec.Command(bin, "--wait", "0", filepath.Join(fixtures.Dir(), "region", f)).Output()
		require.NoError(t, err, f)
		assert.Contains(t, string(out), "boots:       1", f)
	}
}

// TestReadPrintersEscapeOnce: an application slot tag written by the guest
// with a quote, an ESC byte and "café" is escaped once by each printer:
// the text keeps the quote and the UTF-8 and shows the ESC as \x1b; the
// JSON holds the guest's tag as it is.
func TestReadPrintersEscapeOnce(t *testing.T) {
	const tag = "\"\x1bcafé" // 7 of the 8 tag bytes
	now := time.Now()
	img := regionImage(4096, 10, now.Add(-time.Second), now.Add(-200*time.Millisecond))
	off, err := region.SlotOffset(3)
	require.NoError(t, err)
	copy(img[off+region.SlotTag:], tag)
	binary.LittleEndian.PutUint32(img[off+region.SlotPeriodMs:], 500)
	binary.LittleEndian.PutUint32(img[off+region.SlotBeat:], 1)
	path := writeFile(t, "region", img)

	code, out, errOut := runCapture(context.Background(), path)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, `tag ""\x1bcafé"`)
	assert.NotContains(t, out, "\x1b")
	assert.NotContains(t, out, `\x22`)

	code, out, errOut = runCapture(context.Background(), "--json", path)
	require.Equal(t, 0, code, errOut)
	var got struct {
		Verdict struct {
			Slots []struct {
				Index int    `json:"index"`
				Tag   string `json:"tag"`
			} `json:"slots"`
		} `json:"verdict"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	require.Len(t, got.Verdict.Slots, 1)
	assert.Equal(t, 3, got.Verdict.Slots[0].Index)
	assert.Equal(t, tag, got.Verdict.Slots[0].Tag)
}
