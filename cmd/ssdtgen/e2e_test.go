//go:build e2e

package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/internal/testguest/guesttest"
	"github.com/stretchr/testify/require"
)

// TestE2ECLIChannel is the operator's path, end to end, through the
// binaries only: the table `ssdtgen -o` writes, given to a real QEMU with
// exactly the arguments `ssdtgen qemu-args` prints, makes a real Linux
// guest tick the region, and `diagread --fail-unless-alive` says so from
// the backing file. Both placements.
func TestE2ECLIChannel(t *testing.T) {
	qemu := fixtures.RequireTool(t, "qemu-system-x86_64")
	k, ird := guesttest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel) // the parallel subtests outlive this function's body

	ssdtgen, diagread := fixtures.BuildCommand(t, "ssdtgen"), fixtures.BuildCommand(t, "diagread")

	for _, tc := range []struct {
		name, region string
		readArgs     []string
	}{
		{"ivshmem", "ivshmem", nil},
		{"fixed", "fixed:0x10000000", []string{"--offset", "0x10000000", "--size", "65536"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, err := os.MkdirTemp("", "adg-cli")
			require.NoError(t, err)
			t.Cleanup(func() { os.RemoveAll(dir) })
			table, backing := filepath.Join(dir, "diag.aml"), filepath.Join(dir, "region")

			out, err := exec.Command(ssdtgen, "--region", tc.region, "-o", table).CombinedOutput()
			require.NoError(t, err, "ssdtgen -o: %s", out)
			out, err = exec.Command(ssdtgen, "qemu-args", "--region", tc.region, "--ssdt", table, "--backing", backing).Output()
			require.NoError(t, err, "ssdtgen qemu-args")
			var qargs []string
			appendLine := testguest.BootArgs(testguest.ModeAlive, -1)
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if rest, ok := strings.CutPrefix(line, "# guest kernel command line: "); ok {
					appendLine += " " + strings.Trim(rest, "'")
					continue
				}
				qargs = append(qargs, strings.Fields(line)...) // paths here have no spaces
			}
			require.Contains(t, strings.Join(qargs, " "), "-acpitable file="+table)

			args := append([]string{"-M", "q35", "-accel", "tcg", "-m", "512", "-display", "none",
				"-serial", "file:" + filepath.Join(dir, "console.log"), "-no-reboot", "-net", "none",
				"-kernel", k.Vmlinuz, "-initrd", ird.Path, "-append", appendLine}, qargs...)
			q := exec.CommandContext(ctx, qemu, args...)
			var stderr fixtures.SyncBuffer // read while QEMU runs
			q.Stderr = &stderr
			require.NoError(t, q.Start())
			t.Cleanup(func() { _ = q.Process.Kill(); _ = q.Wait() })

			// diagread with no host stamp re-reads until the ticks move.
			var last []byte
			deadline := time.Now().Add(90 * time.Second)
			for {
				cmd := exec.Command(diagread, append(append([]string{"--json", "--fail-unless-alive", "--wait", "5s"}, tc.readArgs...), backing)...)
				last, err = cmd.Output()
				if err == nil {
					break
				}
				require.True(t, time.Now().Before(deadline), "region never alive; last diagread: %v %s\nqemu stderr: %s", err, last, stderr.String())
				time.Sleep(time.Second)
			}
			var got struct {
				Verdict struct {
					State string `json:"state"`
					Ticks uint32 `json:"ticks"`
					Boots uint32 `json:"boots"`
				} `json:"verdict"`
			}
			require.NoError(t, json.Unmarshal(last, &got), "%s", last)
			require.Equal(t, "alive", got.Verdict.State, "%s", last)
			require.Equal(t, uint32(1), got.Verdict.Boots, "%s", last)
			require.GreaterOrEqual(t, got.Verdict.Ticks, uint32(2), "%s", last)
		})
	}
}
