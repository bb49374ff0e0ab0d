package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
)

// lines delivers the lines of r on a channel.
func lines(r io.Reader) <-chan string {
	ch := make(chan string, 100)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// waitLine returns the first line containing want.
func waitLine(t *testing.T, ch <-chan string, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case l, ok := <-ch:
			require.True(t, ok, "output ended before %q (saw %q)", want, seen)
			seen = append(seen, l)
			if strings.Contains(l, want) {
				return l
			}
		case <-deadline:
			t.Fatalf("no line with %q within %v (saw %q)", want, timeout, seen)
		}
	}
}

// The built binary follows a region written by a guest imitation: alive
// (through the echo of its own stamps), stale when the guest stops, alive
// again, and exits 0 on SIGINT.
func TestDiagreadBinaryWatch(t *testing.T) {
	bin := buildDiagread(t)
	p := writeFile(t, "vm", regionImage(4096, 1, time.Time{}, time.Time{})) // 100 ms period
	g := startFileGuest(t, p, 30*time.Millisecond)
	quiet := writeFile(t, "quiet", make([]byte, 4096))

	cmd := exec.Command(bin, "watch", "--json", "--interval", "40ms", "--stamp", p, quiet)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()
	out := lines(stdout)

	l := waitLine(t, out, `"state":"alive"`, 5*time.Second)
	var ev watchJSON
	require.NoError(t, json.Unmarshal([]byte(l), &ev))
	assert.Equal(t, p, ev.Region)
	g.setTicking(false)
	l = waitLine(t, out, `"state":"stale"`, 5*time.Second)
	require.NoError(t, json.Unmarshal([]byte(l), &ev))
	assert.Equal(t, "alive", ev.Prev.String())
	var raw struct {
		Verdict struct {
			EchoMs    int64  `json:"echo_ms"`
			HostStamp string `json:"host_stamp"`
		} `json:"verdict"`
	}
	require.NoError(t, json.Unmarshal([]byte(l), &raw))
	assert.NotZero(t, raw.Verdict.EchoMs, "the guest echoed diagread's stamp")
	assert.NotEmpty(t, raw.Verdict.HostStamp, "diagread --stamp wrote the host stamp")
	g.setTicking(true)
	waitLine(t, out, `"state":"alive"`, 5*time.Second)

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "exit 0 on SIGINT; stderr %s", stderr.String())
	case <-time.After(5 * time.Second):
		t.Fatal("diagread watch did not stop on SIGINT")
	}
}

func TestDiagreadBinaryWatchText(t *testing.T) {
	bin := buildDiagread(t)
	absent := writeFile(t, "absent", make([]byte, 4096))
	cmd := exec.Command(bin, "watch", "--interval", "20ms", absent)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()
	l := waitLine(t, lines(stdout), absent+": absent:", 5*time.Second)
	assert.Contains(t, l, "(was none)")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait())
}

// In-process: the watch loop ends when its context is cancelled.
func TestRunWatchStopsOnCancel(t *testing.T) {
	p := writeFile(t, "vm", regionImage(4096, 10, time.Time{}, time.Time{}))
	ctx, cancel := context.WithCancel(context.Background())
	var sb fixtures.SyncBuffer
	done := make(chan int)
	go func() { done <- runWatch(ctx, []string{"--interval", "10ms", p}, &sb, io.Discard) }()
	require.Eventually(t, func() bool { return strings.Contains(sb.String(), "unknown") }, 5*time.Second, 10*time.Millisecond)
	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code)
	case <-time.After(5 * time.Second):
		t.Fatal("runWatch did not return")
	}
}
