package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/internal/testguest/guesttest"
	"github.com/acpidiag/acpidiag/qemuhook"
	"github.com/acpidiag/acpidiag/ssdt"
)

func runCLI(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, exitUsage, "Modes:"},
		{[]string{"fly"}, exitUsage, `unknown mode "fly"`},
		{[]string{"run"}, exitUsage, "--kernel is required"},
		{[]string{"run", "--kernel", "k", "--region", "pcie"}, exitUsage, "--region"},
		{[]string{"run", "--kernel", "k", "--tick", "50ms"}, exitUsage, "Tick"},
		{[]string{"run", "--kernel", "/nonexistent/vmlinuz", "--workdir", t.TempDir()}, exitUsage, "Kernel: not readable"},
		{[]string{"run", "--kernel", "k", "--machine", "microvm", "--workdir", t.TempDir()}, exitUsage, "microvm"},
		{[]string{"attach"}, exitUsage, "--qmp and --region are required"},
		{[]string{"attach", "--qmp", "q", "--region", "r", "--region-offset", "-4"}, exitUsage, "--region-offset"},
		{[]string{"attach", "--qmp", "q", "--region", "r", "x"}, exitUsage, `unexpected argument "x"`},
		{[]string{"demo", "x"}, exitUsage, `unexpected argument "x"`},
		{[]string{"run", "--bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"run", "--kernel", "k", "--smp", "two"}, exitUsage, "invalid value"},
		{[]string{"run", "--kernel", "k", "--k", "0"}, exitUsage, "--k 0 out of range"},
		{[]string{"attach", "--qmp", "q", "--region", "r", "--k", "1001"}, exitUsage, "--k 1001 out of range"},
		{[]string{"attach", "--bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"demo", "--panic-after", "soon"}, exitUsage, "invalid value"},
		{[]string{"demo", "--panic-after", "-1s"}, exitUsage, "must be positive"},
	} {
		code, _, stderr := runCLI(t, ctx, tc.args...)
		assert.Equal(t, tc.code, code, "%v: %s", tc.args, stderr)
		assert.Contains(t, stderr, tc.msg, "%v", tc.args)
	}
	code, out, _ := runCLI(t, ctx, "--help")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "diagvm demo")
	assert.Contains(t, out, "2 usage error")
	for _, mode := range []string{"run", "attach", "demo"} {
		code, _, stderr := runCLI(t, ctx, mode, "--help")
		assert.Equal(t, exitOK, code, "%s --help", mode)
		assert.Contains(t, stderr, "Exit status:", "%s --help", mode)
	}
}

// TestAttachCLI attaches to a real (idle) QEMU and ends when it is killed.
func TestAttachCLI(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	dir, err := os.MkdirTemp("", "dv")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	ch, err := qemuhook.NewChannel(dir, ssdt.DefaultConfig(), "q35")
	require.NoError(t, err)
	cfg := qemuhook.Config{MemoryMB: 64, Channel: ch, QMPSocket: filepath.Join(dir, "qmp"), ERSTPath: filepath.Join(dir, "erst"), Extra: []string{"-S"}}
	p, err := qemuhook.Start(context.Background(), cfg, qemuhook.StartOptions{})
	require.NoError(t, err)
	defer p.Kill()
	go func() {
		time.Sleep(1500 * time.Millisecond)
		p.Kill()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, out, stderr := runCLI(t, ctx, "attach", "--json", "--qmp", cfg.QMPSocket, "--region", ch.BackingPath, "--erst", cfg.ERSTPath)
	assert.Equal(t, exitOK, code, stderr)
	var types, states []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m struct {
			Type    string `json:"type"`
			Verdict struct {
				State string `json:"state"`
			} `json:"verdict"`
			Last struct {
				State string `json:"state"`
			} `json:"last"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		types = append(types, m.Type)
		states = append(states, m.Verdict.State+m.Last.State)
	}
	assert.Equal(t, []string{"verdict", "verdict", "summary"}, types, out)
	assert.Equal(t, []string{"absent", "disconnected", "disconnected"}, states, out)
}

// TestAttachCLIReconnect: attach --reconnect outlives the QEMU it attached
// to, finds the next QEMU started on the same QMP socket, and ends on the
// signal (ctx) with the summary.
func TestAttachCLIReconnect(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	dir, err := os.MkdirTemp("", "dv")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	ch, err := qemuhook.NewChannel(dir, ssdt.DefaultConfig(), "q35")
	require.NoError(t, err)
	cfg := qemuhook.Config{MemoryMB: 64, Channel: ch, QMPSocket: filepath.Join(dir, "qmp"), ERSTPath: filepath.Join(dir, "erst"), Extra: []string{"-S"}}
	p1, err := qemuhook.Start(context.Background(), cfg, qemuhook.StartOptions{})
	require.NoError(t, err)
	defer p1.Kill()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p2c := make(chan *qemuhook.Process, 1)
	go func() {
		defer close(p2c)
		time.Sleep(1500 * time.Millisecond)
		p1.Kill()
		time.Sleep(time.Second)
		// NoWait: the attached diagvm is re-dialling and takes QEMU's
		// single QMP client slot; Start's own probe would wait for it.
		p2, err := qemuhook.Start(context.Background(), cfg, qemuhook.StartOptions{NoWait: true})
		if err != nil {
			t.Errorf("second QEMU: %v", err)
			cancel()
			return
		}
		p2c <- p2
		time.Sleep(8 * time.Second) // backoff ≤ 2 s, QEMU start on a loaded machine
		cancel()
	}()
	code, out, stderr := runCLI(t, ctx, "attach", "--json", "--reconnect", "--qmp", cfg.QMPSocket, "--region", ch.BackingPath, "--erst", cfg.ERSTPath)
	if p2 := <-p2c; p2 != nil {
		defer p2.Kill()
		assert.False(t, p2.Exited(), "attach leaves the new QEMU running")
	}
	assert.Equal(t, exitOK, code, stderr)
	var types, states []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m struct {
			Type    string `json:"type"`
			Verdict struct {
				State string `json:"state"`
			} `json:"verdict"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		types = append(types, m.Type)
		states = append(states, m.Verdict.State)
	}
	assert.Equal(t, []string{"verdict", "verdict", "verdict", "summary"}, types, out)
	assert.Equal(t, []string{"absent", "disconnected", "reconnected", ""}, states, out)

	code, _, stderr = runCLI(t, context.Background(), "attach", "--help")
	assert.Equal(t, exitOK, code, "--help is not a usage error")
	assert.Contains(t, stderr, "[--reconnect]")
	assert.Contains(t, stderr, "-reconnect\n")
}

// TestRunCLIRealGuest boots the test guest with diagvm run; the guest
// powers off after a few seconds alive.
func TestRunCLIRealGuest(t *testing.T) {
	k, ird := guesttest.Require(t)
	dir, err := os.MkdirTemp("", "dv")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code, out, stderr := runCLI(t, ctx, "run", "--kernel", k.Vmlinuz, "--initrd", ird.Path, "--memory", "256",
		"--append", testguest.BootArgs(testguest.ModePoweroff, 4*time.Second), "--workdir", dir, "--", "-name", "diagvm-test")
	assert.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", out, stderr)
	assert.Contains(t, out, "alive     [region]")
	assert.Contains(t, out, "shutdown  [qmp] shutdown (guest-shutdown)")
	assert.Contains(t, out, "qemu:         exit code 0 (expected)")
	assert.Contains(t, out, "panic:        none")
	assert.Regexp(t, `boots:\s+1\n`, out)
	_, err = os.Stat(filepath.Join(dir, "region"))
	assert.NoError(t, err, "the region file is kept")
}

// TestAttachCLIEscapesOnce: diagvm's text and JSON output of a panic whose
// line holds a quote, an ESC byte and "café" (a real ERST store with the
// line rewritten, fixtures.HostileERST, appearing while attached to a real
// idle QEMU): the text shows the ESC as \x1b and keeps the rest, the JSON
// carries the guest's text; nothing is escaped twice.
func TestAttachCLIEscapesOnce(t *testing.T) {
	for _, asJSON := range []bool{false, true} {
		t.Run(map[bool]string{false: "text", true: "json"}[asJSON], func(t *testing.T) {
			fixtures.RequireTool(t, "qemu-system-x86_64")
			dir, err := os.MkdirTemp("", "dv")
			require.NoError(t, err)
			defer os.RemoveAll(dir)
			ch, err := qemuhook.NewChannel(dir, ssdt.DefaultConfig(), "q35")
			require.NoError(t, err)
			cfg := qemuhook.Config{MemoryMB: 64, Channel: ch, QMPSocket: filepath.Join(dir, "qmp"), Extra: []string{"-S"}}
			p, err := qemuhook.Start(context.Background(), cfg, qemuhook.StartOptions{})
			require.NoError(t, err)
			defer p.Kill()
			store := filepath.Join(dir, "store")
			go func() {
				time.Sleep(500 * time.Millisecond)
				if err := os.WriteFile(store, fixtures.HostileERST(t), 0o644); err != nil {
					t.Error(err)
				}
				time.Sleep(2500 * time.Millisecond) // the ERST store is read every second
				p.Kill()
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := []string{"attach", "--qmp", cfg.QMPSocket, "--region", ch.BackingPath, "--erst", store}
			if asJSON {
				args = append(args, "--json")
			}
			code, out, stderr := runCLI(t, ctx, args...)
			assert.Equal(t, exitPanicked, code, stderr)
			for _, twice := range []string{`\x22`, `\x5c`, `\\x1b`, `caf\xc3`, "\x1b"} {
				assert.NotContains(t, out, twice)
			}
			if !asJSON {
				assert.Contains(t, out, "panicked  [erst] ERST: Panic#1: "+fixtures.HostileShown+"\n")
				assert.Contains(t, out, "\n    "+fixtures.HostileShown+"\n", "the summary's panic line")
				return
			}
			var lines int
			sc := bufio.NewScanner(strings.NewReader(out))
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var m struct {
					Type    string `json:"type"`
					Verdict struct {
						State string                `json:"state"`
						Panic *qemuhook.PanicReport `json:"panic"`
					} `json:"verdict"`
					Panic *qemuhook.PanicReport `json:"panic"`
				}
				require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
				if m.Verdict.State == string(qemuhook.StatePanicked) {
					lines++
					assert.Equal(t, fixtures.HostileLine, m.Verdict.Panic.PanicLine)
				}
				if m.Type == "summary" {
					lines++
					require.NotNil(t, m.Panic)
					assert.Equal(t, fixtures.HostileLine, m.Panic.PanicLine)
				}
			}
			assert.Equal(t, 2, lines, out)
		})
	}
}
