package qemuhook

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/internal/testguest"
)

// sysrqGuest launches the test guest (alive) with extra QEMU arguments and
// waits until its /init runs and the region is alive.
func sysrqGuest(t *testing.T, extra ...string) (*Supervisor, context.Context) {
	t.Helper()
	dir := shortTempDir(t)
	cfg := guestConfig(t, dir, testguest.BootArgs(testguest.ModeAlive, -1))
	cfg.Extra = extra
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	s, err := Launch(ctx, cfg, SupervisorOptions{Watch: hostreader.WatchOptions{Interval: 250 * time.Millisecond}})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	var seen []Verdict
	nextVerdict(t, s.Verdicts(), "alive", SourceRegion, 150*time.Second, &seen)
	go func() {
		for range s.Verdicts() {
		}
	}()
	_, err = s.Console().WaitFor(ctx, 0, "acpidiag-guest: mode alive")
	require.NoError(t, err)
	return s, ctx
}

// sysrqDumps are keys with lines only their dump prints.
var sysrqDumps = []struct {
	key  byte
	want []string
}{
	{'t', []string{"sysrq: Show State", "task:init", "task:kthreadd"}},
	{'w', []string{"sysrq: Show Blocked State"}},
	{'l', []string{"sysrq: Show backtrace of all active CPUs", "NMI backtrace for cpu 0"}},
}

// TestSysRqConsole: SysRq through the console — a serial BREAK (QMP
// chardev-send-break) and then the key on the serial line — gives the same
// dumps as the keyboard path, captured the same way, with the real guest;
// the default path is the keyboard.
func TestSysRqConsole(t *testing.T) {
	checkNoLeak(t)
	s, ctx := sysrqGuest(t)
	con := s.Console()
	for _, k := range sysrqDumps {
		r, err := SysRqVia(ctx, s.QMP(), con, k.key, SysRqOptions{Path: SysRqConsole})
		require.NoError(t, err, "sysrq %c via the console", k.key)
		assert.Equal(t, SysRqConsole, r.Path)
		for _, w := range k.want {
			assert.Contains(t, string(r.Output), w, "sysrq %c via the console:\n%.600s", k.key, r.Output)
		}
		assert.NotContains(t, string(r.Output), "Loglevel set to", "the output after the key, not the loglevel change")
		t.Logf("sysrq %c via the console: %d bytes", k.key, len(r.Output))
	}
	// The default (SysRqAuto) takes the keyboard when it works.
	r, err := SysRqVia(ctx, s.QMP(), con, 'w', SysRqOptions{})
	require.NoError(t, err)
	assert.Equal(t, SysRqKeyboard, r.Path)
	assert.NoError(t, r.KeyboardErr)
	assert.Contains(t, string(r.Output), "sysrq: Show Blocked State")

	_, err = SysRqVia(ctx, s.QMP(), con, 't', SysRqOptions{Path: SysRqConsole, Chardev: "no-such-chardev"})
	require.ErrorContains(t, err, `serial break on "no-such-chardev"`)
	_, err = SysRqVia(ctx, s.QMP(), con, 't', SysRqOptions{Path: SysRqPath(9)})
	require.ErrorContains(t, err, "unknown path")
}

// TestSysRqFallsBackToConsole: a machine without the PS/2 controller
// (-machine i8042=off) takes QMP send-key but the guest never sees the
// keys; the keyboard path alone times out, and the default path falls back
// to the console after FallbackAfter and captures the dumps.
func TestSysRqFallsBackToConsole(t *testing.T) {
	checkNoLeak(t)
	s, ctx := sysrqGuest(t, "-machine", "i8042=off")
	con := s.Console()
	kctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := SysRqVia(kctx, s.QMP(), con, 't', SysRqOptions{Path: SysRqKeyboard})
	cancel()
	require.Error(t, err, "no keyboard: the keyboard path alone gets no answer")
	for _, k := range sysrqDumps {
		start := time.Now()
		r, err := SysRqVia(ctx, s.QMP(), con, k.key, SysRqOptions{FallbackAfter: 2 * time.Second})
		require.NoError(t, err, "sysrq %c", k.key)
		assert.Equal(t, SysRqConsole, r.Path)
		require.Error(t, r.KeyboardErr)
		assert.True(t, errors.Is(r.KeyboardErr, errNoAnswer), "keyboard error: %v", r.KeyboardErr)
		for _, w := range k.want {
			assert.Contains(t, string(r.Output), w, "sysrq %c after the fallback:\n%.600s", k.key, r.Output)
		}
		t.Logf("sysrq %c: fell back to the console, %d bytes in %v", k.key, len(r.Output), time.Since(start).Round(time.Millisecond))
	}
}
