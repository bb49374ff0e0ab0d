package qemuhook

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/ssdt"
)

var (
	initrdOnce sync.Once
	initrd     testguest.Initramfs
	initrdErr  error
)

// requireGuest returns the test guest's kernel and initramfs. Without the
// cached kernel the test is skipped locally and failed under CI.
func requireGuest(t *testing.T) (testguest.KernelFiles, testguest.Initramfs) {
	t.Helper()
	fixtures.RequireTool(t, "qemu-system-x86_64")
	k, err := testguest.Kernel()
	if errors.Is(err, testguest.ErrNoKernel) {
		if fixtures.InCI() {
			t.Fatalf("guest kernel required under CI: %v", err)
		}
		t.Skipf("guest kernel not cached: %v", err)
	}
	require.NoError(t, err)
	initrdOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		initrd, initrdErr = testguest.Build(ctx, "")
	})
	require.NoError(t, initrdErr)
	return k, initrd
}

// guestConfig returns a Config booting the test guest with the channel,
// ERST, pvpanic, QMP and serial wired, in dir.
func guestConfig(t *testing.T, dir, appendArgs string) Config {
	t.Helper()
	k, ird := requireGuest(t)
	rc := ssdt.DefaultConfig()
	return Config{
		Machine: "q35", MemoryMB: 256, Workdir: dir,
		Kernel: k.Vmlinuz, Initrd: ird.Path, Append: appendArgs,
		Channel:   Channel{SSDTPath: testSSDT(t, dir, rc), Region: rc, BackingPath: filepath.Join(dir, "region")},
		ERSTPath:  filepath.Join(dir, "erst"),
		PVPanic:   true,
		QMPSocket: filepath.Join(dir, "qmp"), SerialSocket: filepath.Join(dir, "serial"),
	}
}
