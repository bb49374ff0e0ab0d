package monitor

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBootLogLevel(t *testing.T) {
	q := func(app ...string) []string {
		return append([]string{"qemu-system-x86_64", "-M", "q35", "-kernel", "/k/vmlinuz"}, app...)
	}
	for _, c := range []struct {
		argv  []string
		level int
		word  string
		ok    bool
	}{
		{q("-append", "console=ttyS0 panic=-1 loglevel=4 acpidiag.mode=alive"), 4, "loglevel=4", true},
		{q("-append", "console=ttyS0 loglevel=4 acpidiag.shell=1 loglevel=6"), 6, "loglevel=6", true}, // the last one wins, as in the kernel
		{q("-append", "quiet console=ttyS0"), 4, "quiet", true},
		{q("-append", "loglevel=7 quiet"), 4, "quiet", true},
		{q("-append", "quiet debug"), 10, "debug", true},
		{q("-append", "loglevel=3 -- loglevel=7"), 3, "loglevel=3", true}, // after -- is init's
		{q("-append", "loglevel=x console=ttyS0"), 0, "", false},
		{q("-append", "loglevel=-1"), 0, "", false},
		{q("-append", "console=ttyS0"), 0, "", false}, // the kernel's built-in default: unknown
		{q(), 0, "", false},
		{q("-append"), 0, "", false},
		{q("-append", "loglevel=2", "-append", "loglevel=5"), 5, "loglevel=5", true}, // QEMU takes the last -append
		{q("--append=loglevel=1"), 1, "loglevel=1", true},
	} {
		level, word, ok := BootLogLevel(c.argv)
		require.Equal(t, c.ok, ok, "%q", c.argv)
		require.Equal(t, c.level, level, "%q", c.argv)
		require.Equal(t, c.word, word, "%q", c.argv)
	}
}

// TestRestoreLevelFromProcess: the level comes from a real process's
// /proc/PID/cmdline (a shell standing in for QEMU: the QMP side that finds
// QEMU's pid is exercised by the e2e tests); a configured level wins; no
// QMP falls back to the default.
func TestRestoreLevelFromProcess(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30", "qemu-system-x86_64", "-kernel", "/k/vmlinuz", "-append", "console=ttyS0 loglevel=4 acpidiag.shell=1 loglevel=6")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var level int
	var word string
	var ok bool
	require.Eventually(t, func() bool { // until the child's cmdline is the shell's
		level, word, ok = procBootLogLevel("/proc", cmd.Process.Pid)
		return ok
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 6, level)
	require.Equal(t, "loglevel=6", word)
	_, _, ok = procBootLogLevel("/proc", 0)
	require.False(t, ok)

	five := 5
	n, from := restoreLevel(context.Background(), Limits{RestoreLogLevel: &five}, nil, "/proc")
	require.Equal(t, 5, n)
	require.Equal(t, "limits.restore_loglevel", from)
	n, from = restoreLevel(context.Background(), Limits{}, nil, "/proc")
	require.Equal(t, DefaultRestoreLogLevel, n)
	require.Equal(t, "default", from)
}
