//go:build e2e

package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/internal/testguest/guesttest"
)

// diagreadOut is the part of diagread's and diagread ping's --json output
// the test reads.
type diagreadOut struct {
	Answered    bool     `json:"answered"`
	RoundTripMs *float64 `json:"round_trip_ms"`
	Ticks       *uint32  `json:"ticks"`
	Verdict     struct {
		State string `json:"state"`
		Slots []struct {
			Index int    `json:"index"`
			State string `json:"state"`
			Tag   string `json:"tag"`
			Beat  uint32 `json:"beat"`
		} `json:"slots"`
	} `json:"verdict"`
}

func (o diagreadOut) slot(i int) (state, tag string) {
	for _, s := range o.Verdict.Slots {
		if s.Index == i {
			return s.State, s.Tag
		}
	}
	return "unused", ""
}

// TestE2EDiagbeat: a real guest runs /bin/diagbeat (cmd/diagbeat, static,
// in the test initramfs) the way an operator would: slot 2 "web" beating
// only while its check command passes, slot 3 "plain" beating
// unconditionally. From the host, through the binaries: `diagread ping`
// gets the AML's answer (round trip in ms and ticks); `diagread` shows both
// slots alive with their tags; once the guest's health file is removed the
// web check fails and diagread shows slot 2 stale while the kernel tick and
// slot 3 stay alive; after QEMU is killed `diagread ping` exits 1 with the
// verdict that explains it. Both placements (ivshmem through sysfs
// resource2, fixed through /dev/mem).
func TestE2EDiagbeat(t *testing.T) {
	qemu := fixtures.RequireTool(t, "qemu-system-x86_64")
	k, ird := guesttest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
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
			dir, err := os.MkdirTemp("", "adg-beat")
			require.NoError(t, err)
			t.Cleanup(func() { os.RemoveAll(dir) })
			table, backing, console := filepath.Join(dir, "diag.aml"), filepath.Join(dir, "region"), filepath.Join(dir, "console.log")
			out, err := exec.Command(ssdtgen, "--region", tc.region, "-o", table).CombinedOutput()
			require.NoError(t, err, "ssdtgen -o: %s", out)
			out, err = exec.Command(ssdtgen, "qemu-args", "--region", tc.region, "--ssdt", table, "--backing", backing).Output()
			require.NoError(t, err, "ssdtgen qemu-args")
			guestArgs := []string{"acpidiag.diagbeat=1", "acpidiag.diagbeat_period=1s", "acpidiag.healthy_for=40s"}
			if tc.region != "ivshmem" {
				guestArgs = append(guestArgs, "acpidiag.diagbeat_region="+tc.region)
			}
			appendLine := testguest.BootArgs(testguest.ModeAlive, -1, guestArgs...)
			var qargs []string
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if rest, ok := strings.CutPrefix(line, "# guest kernel command line: "); ok {
					appendLine += " " + strings.Trim(rest, "'")
					continue
				}
				qargs = append(qargs, strings.Fields(line)...)
			}
			args := append([]string{"-M", "q35", "-accel", "tcg", "-m", "512", "-display", "none",
				"-serial", "file:" + console, "-no-reboot", "-net", "none",
				"-kernel", k.Vmlinuz, "-initrd", ird.Path, "-append", appendLine}, qargs...)
			q := exec.CommandContext(ctx, qemu, args...)
			require.NoError(t, q.Start())
			t.Cleanup(func() { _ = q.Process.Kill(); _ = q.Wait() })
			consoleText := func() string { b, _ := os.ReadFile(console); return string(b) }

			read := func(sub string, extra ...string) (diagreadOut, int, string) {
				a := append([]string{"--json"}, tc.readArgs...)
				if sub != "" {
					a = append([]string{sub}, a...)
				}
				cmd := exec.Command(diagread, append(append(a, extra...), backing)...)
				out, err := cmd.Output()
				code := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				} else {
					require.NoError(t, err)
				}
				var o diagreadOut
				if len(out) > 0 || code != exitBadInput { // 2 with no output: QEMU has not made the file yet
					require.NoError(t, json.Unmarshal(out, &o), "%s", out)
				}
				return o, code, string(out)
			}
			waitFor := func(within time.Duration, what string, cond func(diagreadOut) bool) diagreadOut {
				deadline := time.Now().Add(within)
				for {
					o, _, raw := read("", "--wait", "5s")
					if cond(o) {
						return o
					}
					require.True(t, time.Now().Before(deadline), "%s: never seen; last diagread: %s\nconsole:\n%s", what, raw, consoleText())
					time.Sleep(500 * time.Millisecond)
				}
			}

			waitFor(120*time.Second, "kernel tick alive", func(o diagreadOut) bool { return o.Verdict.State == "alive" })

			p, code, raw := read("ping", "--timeout", "10s")
			require.Equal(t, 0, code, "diagread ping: %s", raw)
			require.True(t, p.Answered, raw)
			require.NotNil(t, p.RoundTripMs, raw)
			require.Greater(t, *p.RoundTripMs, 0.0, raw)
			require.LessOrEqual(t, *p.RoundTripMs, 5000.0, "answered within a few 1 s ticks: %s", raw)
			require.GreaterOrEqual(t, *p.Ticks, uint32(1), raw)
			t.Logf("%s: ping round trip %.1f ms, %d tick(s)", tc.name, *p.RoundTripMs, *p.Ticks)

			waitFor(60*time.Second, "both diagbeat slots alive", func(o diagreadOut) bool {
				s2, tag2 := o.slot(2)
				s3, tag3 := o.slot(3)
				return s2 == "alive" && tag2 == "web" && s3 == "alive" && tag3 == "plain"
			})
			o := waitFor(90*time.Second, "web slot stale while the kernel and the plain slot are alive", func(o diagreadOut) bool {
				s2, _ := o.slot(2)
				s3, _ := o.slot(3)
				return o.Verdict.State == "alive" && s2 == "stale" && s3 == "alive"
			})
			require.Contains(t, consoleText(), "the web check fails from now on")
			_ = o
			text, err := exec.Command(diagread, append(append([]string{}, tc.readArgs...), "--wait", "5s", backing)...).Output()
			require.NoError(t, err)
			require.Contains(t, string(text), "verdict:     alive")
			require.Regexp(t, `slot 2:      stale tag "web" beat \d+ period 1s`, string(text))
			require.Regexp(t, `slot 3:      alive tag "plain" beat \d+ period 1s last beat`, string(text))

			// No guest any more: the ping times out and says why.
			_ = q.Process.Kill()
			_ = q.Wait()
			p, code, raw = read("ping", "--timeout", "5s")
			require.Equal(t, 1, code, raw)
			require.False(t, p.Answered, raw)
			require.Equal(t, "stale", p.Verdict.State, raw)
		})
	}
}
