package qemuhook

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/qmp"
	"github.com/acpidiag/acpidiag/ssdt"
)

// smallTmpfs mounts a real tmpfs of size bytes (root only: skipped
// locally without root, failed under CI, which runs as root).
func smallTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if fixtures.InCI() {
			t.Fatal("mounting a tmpfs needs root")
		}
		t.Skip("mounting a tmpfs needs root")
	}
	dir, err := os.MkdirTemp("", "acpidiag-tmpfs")
	require.NoError(t, err)
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(size), "tmpfs", dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() {
		_ = exec.Command("umount", dir).Run()
		_ = os.Remove(dir)
	})
	return dir
}

// pausedConfig is a QEMU with the channel and ERST wired, paused (-S), no
// kernel: enough to map the file-backed memories.
func pausedConfig(t *testing.T, dir string, rc ssdt.Config) Config {
	t.Helper()
	return Config{
		MemoryMB: 128, Workdir: dir,
		Channel:   Channel{SSDTPath: testSSDT(t, t.TempDir(), rc), Region: rc, BackingPath: filepath.Join(dir, "region")},
		ERSTPath:  filepath.Join(dir, "erst"),
		QMPSocket: filepath.Join(t.TempDir(), "qmp"),
		Extra:     []string{"-S"},
	}
}

// A workdir whose filesystem cannot hold the region and the ERST store
// fails at Start, before QEMU runs, naming the cause; it used to start and
// die of SIGBUS when the guest wrote its panic log.
func TestStartFailsOnFullDisk(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	dir := smallTmpfs(t, 96<<10) // room for the 64 KiB region, not the 64 KiB ERST store
	cfg := pausedConfig(t, dir, ssdt.DefaultConfig())
	p, err := Start(context.Background(), cfg, StartOptions{})
	if p != nil {
		p.Kill()
	}
	require.Error(t, err)
	assert.Nil(t, p, "QEMU must not run")
	assert.ErrorIs(t, err, ErrNoSpace)
	assert.Contains(t, err.Error(), dir)
	assert.Contains(t, err.Error(), "ERST store")
	assert.Contains(t, err.Error(), "bytes free")

	// With room, both files are preallocated (every block on disk) before
	// QEMU starts.
	dir = smallTmpfs(t, 1<<20)
	cfg = pausedConfig(t, dir, ssdt.DefaultConfig())
	p, err = Start(context.Background(), cfg, StartOptions{})
	require.NoError(t, err)
	defer p.Kill()
	for _, f := range cfg.BackingFiles() {
		blocks, size, err := allocated(f.Path)
		require.NoError(t, err)
		assert.Equal(t, f.Size, size, f.What)
		assert.GreaterOrEqual(t, blocks, f.Size, "%s preallocated", f.What)
	}
	// Filling the rest of the disk now cannot starve the guest's memory.
	fill, err := os.Create(filepath.Join(dir, "fill"))
	require.NoError(t, err)
	_, err = fill.Write(make([]byte, 2<<20))
	assert.True(t, errors.Is(err, syscall.ENOSPC), "%v", err)
	fill.Close()
}

// A file-backed guest RAM truncated under QEMU: QEMU dies of SIGBUS at
// its next access, and the exit error names the file and the cause.
func TestSIGBUSCauseNamed(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	dir := t.TempDir()
	rc := ssdt.DefaultConfig()
	rc.Placement, rc.Address = ssdt.PlaceFixed, 0x1000000
	cfg := pausedConfig(t, dir, rc)
	p, err := Start(context.Background(), cfg, StartOptions{})
	require.NoError(t, err)
	defer p.Kill()
	ram := cfg.Channel.BackingPath
	require.NoError(t, os.Truncate(ram, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := qmp.Dial(ctx, cfg.QMPSocket, qmp.Options{})
	require.NoError(t, err)
	defer q.Close()
	// QEMU reads guest RAM at 16 MiB: the page is past the end of the file.
	_ = q.Execute(ctx, "pmemsave", map[string]any{"val": 0x1000000, "size": 4096, "filename": filepath.Join(dir, "dump")}, nil)
	select {
	case <-p.Done():
	case <-ctx.Done():
		t.Fatal("QEMU did not die")
	}
	var ee *ExitError
	require.ErrorAs(t, p.ExitError(), &ee)
	ws := ee.State.Sys().(syscall.WaitStatus)
	require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGBUS, "%v", ee.State)
	assert.Contains(t, ee.Cause, ram)
	assert.Contains(t, ee.Cause, "truncated")
	assert.Contains(t, ee.Error(), "SIGBUS on file-backed guest memory")
}

// TestPdeathsigHelper is a child process for TestQEMUDiesWithParent: it
// starts QEMU, prints its pid and waits to be killed.
func TestPdeathsigHelper(t *testing.T) {
	dir := os.Getenv("ACPIDIAG_PDEATHSIG_DIR")
	if dir == "" {
		t.Skip("helper process")
	}
	cfg := pausedConfig(t, dir, ssdt.DefaultConfig())
	p, err := Start(context.Background(), cfg, StartOptions{KeepOnParentDeath: os.Getenv("ACPIDIAG_KEEP") == "1"})
	require.NoError(t, err)
	fmt.Printf("QEMUPID %d\n", p.Pid())
	time.Sleep(time.Minute)
}

// kill -9 of the process that started QEMU ends QEMU too (it used to run
// on, orphaned), unless KeepOnParentDeath.
func TestQEMUDiesWithParent(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	for _, keep := range []bool{false, true} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPdeathsigHelper$", "-test.v")
		cmd.Env = append(os.Environ(), "ACPIDIAG_PDEATHSIG_DIR="+t.TempDir(), "ACPIDIAG_KEEP="+map[bool]string{true: "1"}[keep])
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		pid := 0
		buf := make([]byte, 4096)
		var got strings.Builder
		deadline := time.Now().Add(30 * time.Second)
		for pid == 0 && time.Now().Before(deadline) {
			n, err := out.Read(buf)
			got.Write(buf[:n])
			if i := strings.Index(got.String(), "QEMUPID "); i >= 0 {
				fmt.Sscanf(got.String()[i:], "QEMUPID %d", &pid)
			}
			if err != nil {
				break
			}
		}
		require.NotZero(t, pid, "helper output: %s", got.String())
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		gone := func() bool {
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			return err != nil || strings.Contains(string(st), ") Z ")
		}
		if keep {
			time.Sleep(time.Second)
			assert.False(t, gone(), "with KeepOnParentDeath QEMU runs on")
			_ = syscall.Kill(pid, syscall.SIGKILL)
			continue
		}
		assert.Eventually(t, gone, 5*time.Second, 20*time.Millisecond, "QEMU %d still runs after its parent was killed", pid)
	}
}

// sigbusCause on real files: a sparse backing file on a full tmpfs, a
// removed one, and nothing wrong.
func TestSIGBUSCauseKinds(t *testing.T) {
	dir := smallTmpfs(t, 64<<10)
	sparse := filepath.Join(dir, "erst")
	f, err := os.Create(sparse)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(ERSTSize)) // a hole: no block on disk
	require.NoError(t, f.Close())
	fill, err := os.Create(filepath.Join(dir, "fill"))
	require.NoError(t, err)
	_, err = fill.Write(make([]byte, 128<<10))
	require.ErrorIs(t, err, syscall.ENOSPC)
	fill.Close()
	cause := sigbusCause([]BackingFile{{What: "ERST store", Path: sparse, Size: ERSTSize}})
	assert.Contains(t, cause, sparse)
	assert.Contains(t, cause, "the disk is full")

	gone := filepath.Join(t.TempDir(), "region")
	cause = sigbusCause([]BackingFile{{What: "region", Path: gone, Size: 4096}})
	assert.Contains(t, cause, "was removed")

	ok := filepath.Join(t.TempDir(), "region")
	require.NoError(t, PreallocateBackingFiles([]BackingFile{{What: "region", Path: ok, Size: 4096}}))
	cause = sigbusCause([]BackingFile{{What: "region", Path: ok, Size: 4096}})
	assert.Contains(t, cause, "usual cause")
}
