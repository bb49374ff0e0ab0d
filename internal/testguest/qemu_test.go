package testguest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/region"
)

// This file holds a deliberately small QEMU launcher for the test guest's own
// tests. The real launcher (arguments, QMP, supervision) is package qemuhook.

// requireKernel returns the cached guest kernel, skipping the test when it
// is not cached (failing under CI=true, where .ci/run fetches it).
func requireKernel(t testing.TB) KernelFiles {
	t.Helper()
	k, err := Kernel()
	if errors.Is(err, ErrNoKernel) {
		if fixtures.InCI() {
			t.Fatalf("guest kernel required under CI: %v", err)
		}
		t.Skipf("%v", err)
	}
	require.NoError(t, err)
	return k
}

// guestInitramfs builds (or reuses, by content hash) the initramfs in the
// default cache directory, once per test binary.
var guestInitramfs = sync.OnceValues(func() (Initramfs, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return Build(ctx, "")
})

// vm is one QEMU process running the test guest.
type vm struct {
	t       testing.TB
	cmd     *exec.Cmd
	region  string              // host file backing the ivshmem BAR2
	console fixtures.SyncBuffer // the serial output, written while tests read it
	done    chan struct{}
	waitErr error
}

// Console returns the serial output so far.
func (v *vm) Console() string { return v.console.String() }

// waitGoesOn waits until the guest's application heartbeat has moved by
// more than two beats: the guest lives on.
func (v *vm) waitGoesOn() {
	v.t.Helper()
	first := v.waitBeat(30*time.Second, 0)
	v.waitBeat(30*time.Second, first.beat+2)
}

// bootGuest starts QEMU (q35, TCG) with the test guest, pvpanic and an
// ivshmem-plain region backed by a fresh 64 KiB temp file.
func bootGuest(t testing.TB, smp int, appendLine string) *vm {
	t.Helper()
	fixtures.RequireTool(t, "qemu-system-x86_64")
	requireKernel(t)
	ird, err := guestInitramfs()
	require.NoError(t, err)
	return bootGuestWith(t, ird, smp, appendLine)
}

// bootGuestWith is bootGuest with a given initramfs.
func bootGuestWith(t testing.TB, ird Initramfs, smp int, appendLine string) *vm {
	t.Helper()
	qemu := fixtures.RequireTool(t, "qemu-system-x86_64")
	k := requireKernel(t)

	dir := t.TempDir()
	regionFile := filepath.Join(dir, "region")
	require.NoError(t, os.WriteFile(regionFile, make([]byte, 64<<10), 0o600))
	v := &vm{t: t, region: regionFile, done: make(chan struct{})}
	v.cmd = exec.Command(qemu,
		"-M", "q35", "-accel", "tcg", "-m", "512", "-smp", fmt.Sprint(smp),
		"-nographic", "-no-reboot", "-net", "none",
		"-kernel", k.Vmlinuz, "-initrd", ird.Path, "-append", appendLine,
		"-device", "pvpanic",
		"-object", "memory-backend-file,id=diag,mem-path="+regionFile+",size=64K,share=on",
		"-device", "ivshmem-plain,memdev=diag,addr=0x10",
	)
	v.cmd.Stdout = &v.console
	v.cmd.Stderr = &v.console
	require.NoError(t, v.cmd.Start())
	go func() {
		v.waitErr = v.cmd.Wait()
		close(v.done)
	}()
	t.Cleanup(func() {
		select {
		case <-v.done:
		default:
			_ = v.cmd.Process.Kill()
			<-v.done
		}
		if t.Failed() {
			t.Logf("guest console:\n%s", v.Console())
		}
	})
	return v
}

// waitConsole waits until the console shows every string in want.
func (v *vm) waitConsole(timeout time.Duration, want ...string) {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c := v.Console()
		missing := ""
		for _, w := range want {
			if !strings.Contains(c, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		select {
		case <-v.done:
			v.t.Fatalf("QEMU exited (%v) before the console showed %q", v.waitErr, missing)
		default:
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("console did not show %q within %s", missing, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitExit waits for QEMU to exit.
func (v *vm) waitExit(timeout time.Duration) error {
	v.t.Helper()
	select {
	case <-v.done:
		return v.waitErr
	case <-time.After(timeout):
		v.t.Fatalf("QEMU still running %s later", timeout)
		return nil
	}
}

// appSlot reads application slot i from the host file.
type appSlot struct {
	beat, periodMs uint32
	tag            string
}

func (v *vm) slot(i int) appSlot {
	v.t.Helper()
	b, err := os.ReadFile(v.region)
	require.NoError(v.t, err)
	off, err := region.SlotOffset(i)
	require.NoError(v.t, err)
	s := b[off : off+region.SlotSize]
	return appSlot{
		beat:     binary.LittleEndian.Uint32(s[region.SlotBeat:]),
		periodMs: binary.LittleEndian.Uint32(s[region.SlotPeriodMs:]),
		tag:      string(bytes.TrimRight(s[region.SlotTag:region.SlotTag+region.SlotTagLen], "\x00")),
	}
}

// waitBeat waits until slot 0's beat exceeds min and returns the slot.
func (v *vm) waitBeat(timeout time.Duration, min uint32) appSlot {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := v.slot(0)
		if s.beat > min {
			return s
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("application beat stayed at %d (want > %d) for %s", s.beat, min, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const bootTimeout = 90 * time.Second // TCG on a shared 2-core machine: ~5 s idle, far more under load

func TestBootAliveHeartbeat(t *testing.T) {
	t.Parallel()
	v := bootGuest(t, 1, BootArgs(ModeAlive, 0))
	v.waitConsole(bootTimeout,
		"acpidiag-guest: ready",
		"acpidiag-guest: module pvpanic.ko loaded",
		"acpidiag-guest: module pvpanic-mmio.ko loaded",
		"acpidiag-guest: pvpanic bound: QEMU0001:00 (pvpanic-mmio)",
		"acpidiag-guest: ivshmem region: 0000:00:10.0 resource2 mapped (65536 bytes)",
		"acpidiag-guest: heartbeat started: slot 0 tag \"testapp\" every 500ms",
		"acpidiag-guest: mode alive",
	)
	first := v.waitBeat(30*time.Second, 0)
	require.Equal(t, AppTag, first.tag)
	require.Equal(t, uint32(DefaultAppPeriod.Milliseconds()), first.periodMs)
	second := v.waitBeat(30*time.Second, first.beat+1)
	require.Greater(t, second.beat, first.beat+1, "beat counter must keep moving")
	// Only slot 0 is the guest's; the AML header words are not written
	// without the SSDT, and the test guest must not touch them.
	b, err := os.ReadFile(v.region)
	require.NoError(t, err)
	require.Equal(t, make([]byte, region.OffSlots), b[:region.OffSlots], "the guest wrote outside its application slot")
	s1 := v.slot(1)
	require.Equal(t, appSlot{}, s1, "slot 1 must stay empty")
}

func TestBootPanicExits(t *testing.T) {
	t.Parallel()
	v := bootGuest(t, 1, BootArgs(ModePanic, time.Second))
	v.waitConsole(bootTimeout, "acpidiag-guest: mode panic after 1s", "acpidiag-guest: panicking now")
	// panic=-1 reboots at once, -no-reboot turns the reboot into an exit.
	require.NoError(t, v.waitExit(bootTimeout))
	require.Contains(t, v.Console(), "Kernel panic - not syncing: sysrq triggered crash")
}

func TestBootOptionsSlotTagPeriod(t *testing.T) {
	t.Parallel()
	v := bootGuest(t, 1, BootArgs(ModeAlive, 0, "acpidiag.app_slot=3", "acpidiag.app_tag=other", "acpidiag.app_period=100ms", "acpidiag.after=bogus"))
	v.waitConsole(bootTimeout,
		`acpidiag-guest: bad option acpidiag.after="bogus"`,
		`acpidiag-guest: heartbeat started: slot 3 tag "other" every 100ms`)
	deadline := time.Now().Add(30 * time.Second)
	for v.slot(3).beat < 3 {
		require.True(t, time.Now().Before(deadline), "slot 3 beat did not move: %+v", v.slot(3))
		time.Sleep(100 * time.Millisecond)
	}
	s := v.slot(3)
	require.Equal(t, "other", s.tag)
	require.Equal(t, uint32(100), s.periodMs)
	require.Equal(t, appSlot{}, v.slot(0), "slot 0 must stay empty when app_slot=3")
}
