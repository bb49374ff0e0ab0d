//go:build e2e

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/internal/testguest/guesttest"
)

func hostileGuestFiles(t *testing.T) (kernel, initrd string) {
	t.Helper()
	k, ird := guesttest.Require(t)
	return k.Vmlinuz, ird.Path
}

// childPid returns the pid of a child of parent whose command name is
// comm, 0 if none.
func childPid(t *testing.T, parent int, comm string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	require.NoError(t, err)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(st)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(s[close+1:])
		if len(f) > 2 && s[open+1:close] == comm && f[1] == strconv.Itoa(parent) {
			return pid
		}
	}
	return 0
}

func running(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(st), ") Z ")
}

// regionStates reads JSON lines from r and sends the region verdict
// states (diagread watch: verdict.state; diagvm: verdict.state of source
// "region").
func regionStates(r io.Reader) <-chan string {
	ch := make(chan string, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m struct {
				Verdict struct {
					State  string `json:"state"`
					Source string `json:"source"`
					Reason string `json:"reason"`
				} `json:"verdict"`
			}
			if json.Unmarshal(sc.Bytes(), &m) != nil || m.Verdict.State == "" {
				continue
			}
			if m.Verdict.Source != "" && m.Verdict.Source != "region" {
				continue
			}
			ch <- m.Verdict.State + ": " + m.Verdict.Reason
		}
	}()
	return ch
}

// firstUntilAlive returns the region states seen until the first alive one.
func firstUntilAlive(t *testing.T, ch <-chan string, within time.Duration) []string {
	t.Helper()
	var seen []string
	deadline := time.After(within)
	for {
		select {
		case s, ok := <-ch:
			require.True(t, ok, "stream ended; seen %q", seen)
			seen = append(seen, s)
			if strings.HasPrefix(s, "alive") {
				return seen
			}
		case <-deadline:
			t.Fatalf("no alive verdict within %v; seen %q", within, seen)
		}
	}
}

// TestE2ENewStamperAfterKill: a guest runs under `diagvm run --keep-qemu`;
// diagvm is killed with SIGKILL and QEMU runs on; 3.5 s later (the echo
// is older than K periods) a new stamper starts: `diagread watch --stamp`,
// then `diagvm attach`. Their first verdict is not stale (it was "stale:
// host stamp echo older than K periods while the host keeps stamping"),
// and alive follows. Without --keep-qemu, QEMU dies with diagvm.
func TestE2ENewStamperAfterKill(t *testing.T) {
	kernel, initrd := hostileGuestFiles(t)
	diagvm, diagread := fixtures.BuildCommand(t, "diagvm"), fixtures.BuildCommand(t, "diagread")
	dir, err := os.MkdirTemp("", "dvk")
	require.NoError(t, err)
	defer os.RemoveAll(dir)

	run := exec.Command(diagvm, "run", "--json", "--keep-qemu", "--kernel", kernel, "--initrd", initrd, "--memory", "256",
		"--append", testguest.BootArgs(testguest.ModeAlive, 0), "--workdir", dir)
	out, err := run.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, run.Start())
	defer run.Process.Kill()
	firstUntilAlive(t, regionStates(out), 4*time.Minute)
	qemu := childPid(t, run.Process.Pid, "qemu-system-x86")
	require.NotZero(t, qemu, "QEMU child of diagvm")
	defer syscall.Kill(qemu, syscall.SIGKILL)
	require.NoError(t, run.Process.Signal(syscall.SIGKILL))
	_ = run.Wait()
	time.Sleep(3500 * time.Millisecond)
	require.True(t, running(qemu), "--keep-qemu: QEMU outlives a killed diagvm")

	region := filepath.Join(dir, "region")
	watch := exec.Command(diagread, "watch", "--stamp", "--json", region)
	wout, err := watch.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, watch.Start())
	seen := firstUntilAlive(t, regionStates(wout), 30*time.Second)
	_ = watch.Process.Signal(syscall.SIGTERM)
	_ = watch.Wait()
	t.Logf("diagread watch --stamp: %q", seen)
	for _, s := range seen {
		assert.False(t, strings.HasPrefix(s, "stale"), "diagread watch --stamp after a dead stamper: %q", seen)
	}

	time.Sleep(3500 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	attach := exec.CommandContext(ctx, diagvm, "attach", "--json", "--qmp", filepath.Join(dir, "qmp.sock"), "--region", region)
	aout, err := attach.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, attach.Start())
	seen = firstUntilAlive(t, regionStates(aout), 30*time.Second)
	_ = attach.Process.Signal(syscall.SIGTERM)
	_ = attach.Wait()
	t.Logf("diagvm attach: %q", seen)
	for _, s := range seen {
		assert.False(t, strings.HasPrefix(s, "stale"), "diagvm attach after a dead stamper: %q", seen)
	}
	require.NoError(t, syscall.Kill(qemu, syscall.SIGKILL))

	// By default a killed diagvm takes its QEMU along.
	dir2, err := os.MkdirTemp("", "dvk")
	require.NoError(t, err)
	defer os.RemoveAll(dir2)
	run = exec.Command(diagvm, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256",
		"--append", testguest.BootArgs(testguest.ModeAlive, 0), "--workdir", dir2)
	require.NoError(t, run.Start())
	defer run.Process.Kill()
	qemu = 0
	require.Eventually(t, func() bool {
		qemu = childPid(t, run.Process.Pid, "qemu-system-x86")
		return qemu != 0
	}, 30*time.Second, 50*time.Millisecond)
	defer syscall.Kill(qemu, syscall.SIGKILL)
	require.NoError(t, run.Process.Signal(syscall.SIGKILL))
	_ = run.Wait()
	assert.Eventually(t, func() bool { return !running(qemu) }, 5*time.Second, 20*time.Millisecond,
		"QEMU %d runs on, orphaned, after diagvm was killed", qemu)
}
