package qemuhook

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	goqmp "github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/raw"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/qmp"
	"github.com/acpidiag/acpidiag/ssdt"
)

// startIdleQEMU starts a real QEMU stopped in prelaunch (-S) with a QMP
// socket and returns the process and config.
func startIdleQEMU(t testing.TB, dir string, extra ...string) (*Process, Config) {
	t.Helper()
	fixtures.RequireTool(t, "qemu-system-x86_64")
	rc := ssdt.DefaultConfig()
	cfg := Config{MemoryMB: 64, AllowReboot: true,
		Channel:   Channel{SSDTPath: testSSDT(t, dir, rc), Region: rc, BackingPath: filepath.Join(dir, "region")},
		QMPSocket: filepath.Join(dir, "qmp"), Extra: append([]string{"-S"}, extra...)}
	p, err := Start(context.Background(), cfg, StartOptions{})
	require.NoError(t, err)
	t.Cleanup(p.Kill)
	return p, cfg
}

func dialTest(t *testing.T, path string, o qmp.Options) *qmp.Client {
	t.Helper()
	q, err := qmp.Dial(context.Background(), path, o)
	require.NoError(t, err)
	t.Cleanup(func() { q.Close() })
	return q
}

// waitEvent returns the next event named name (skipping others).
func waitEvent(t *testing.T, ch <-chan qmp.Event, name string, within time.Duration) qmp.Event {
	t.Helper()
	tm := time.After(within)
	for {
		select {
		case ev, ok := <-ch:
			require.True(t, ok, "events closed while waiting for %s", name)
			if ev.Name == name {
				return ev
			}
		case <-tm:
			t.Fatalf("no %s event within %v", name, within)
		}
	}
}

// TestQMPConnectTimeout: a real unix socket that accepts but never greets.
func TestQMPConnectTimeout(t *testing.T) {
	dir := shortTempDir(t)
	path := filepath.Join(dir, "silent")
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	defer l.Close()
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // keep it open, never write
		}
	}()
	start := time.Now()
	_, err = qmp.Dial(context.Background(), path, qmp.Options{DialTimeout: 300 * time.Millisecond})
	el := time.Since(start)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "greeting")
	assert.True(t, errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded), "%v", err)
	assert.Less(t, el, 3*time.Second)

	// A cancelled context ends the wait too.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = qmp.Dial(ctx, path, qmp.Options{DialTimeout: time.Minute})
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)

	// Something that greets with garbage is a qmp.ProtocolError.
	path2 := filepath.Join(dir, "garbage")
	l2, err := net.Listen("unix", path2)
	require.NoError(t, err)
	defer l2.Close()
	go func() {
		c, err := l2.Accept()
		if err == nil {
			c.Write([]byte("hello, not QMP\n"))
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	_, err = qmp.Dial(context.Background(), path2, qmp.Options{DialTimeout: 2 * time.Second})
	var pe *qmp.ProtocolError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, int64(0), pe.Offset)
}

func TestQMPStopContEvents(t *testing.T) {
	dir := shortTempDir(t)
	_, cfg := startIdleQEMU(t, dir)
	q := dialTest(t, cfg.QMPSocket, qmp.Options{})
	assert.Equal(t, 7, q.Version().QEMU.Major)
	ctx := context.Background()
	require.NoError(t, q.Execute(ctx, "cont", nil, nil))
	ev := waitEvent(t, q.Events(), qmp.EventResume, 5*time.Second)
	assert.WithinDuration(t, time.Now(), ev.Time, 10*time.Second)
	// system_reset gives a typed RESET event.
	require.NoError(t, q.Execute(ctx, "system_reset", nil, nil))
	ev = waitEvent(t, q.Events(), qmp.EventReset, 5*time.Second)
	assert.Equal(t, "host-qmp-system-reset", ev.Reason)
	assert.False(t, ev.Guest)
	require.NoError(t, q.Execute(ctx, "stop", nil, nil))
	waitEvent(t, q.Events(), qmp.EventStop, 5*time.Second)
	var st struct {
		Running bool   `json:"running"`
		Status  string `json:"status"`
	}
	require.NoError(t, q.Execute(ctx, "query-status", nil, &st))
	assert.False(t, st.Running)
	assert.Equal(t, "paused", st.Status)

	// A QEMU error reply is a *qmp.CommandError naming the command.
	err := q.Execute(ctx, "no-such-command", nil, nil)
	var ce *qmp.CommandError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "CommandNotFound", ce.Class)
	assert.Equal(t, "no-such-command", ce.Command)

	// go-qemu's typed API runs over the session.
	mon := raw.NewMonitor(q.Monitor())
	si, err := mon.QueryStatus()
	require.NoError(t, err)
	assert.Equal(t, raw.RunStatePaused, si.Status)
}

// TestQMPEventsBoundedAndDropped: nobody reads events, commands keep
// working, the oldest events are dropped and counted.
func TestQMPEventsBoundedAndDropped(t *testing.T) {
	dir := shortTempDir(t)
	_, cfg := startIdleQEMU(t, dir)
	q := dialTest(t, cfg.QMPSocket, qmp.Options{EventBuffer: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 10; i++ {
		require.NoError(t, q.Execute(ctx, "cont", nil, nil))
		require.NoError(t, q.Execute(ctx, "stop", nil, nil))
	}
	// 20 events, 3 kept: the last ones are RESUME, STOP (+ one before).
	require.Eventually(t, func() bool { return q.Dropped() >= 17 }, 5*time.Second, 10*time.Millisecond)
	var names []string
	for len(names) < 3 {
		names = append(names, (<-q.Events()).Name)
	}
	assert.Equal(t, []string{qmp.EventStop, qmp.EventResume, qmp.EventStop}, names)
	assert.Equal(t, uint64(17), q.Dropped())
}

// TestQMPLargeReply: replies far above go-qemu's 64 KiB scanner limit.
func TestQMPLargeReply(t *testing.T) {
	dir := shortTempDir(t)
	_, cfg := startIdleQEMU(t, dir, "-smp", "48")
	q := dialTest(t, cfg.QMPSocket, qmp.Options{})
	ctx := context.Background()
	raw, err := q.ExecuteRaw(ctx, "query-qmp-schema", nil)
	require.NoError(t, err)
	assert.Greater(t, len(raw), 64<<10, "query-qmp-schema is larger than 64 KiB")
	regs, err := q.HMP(ctx, "info registers -a")
	require.NoError(t, err)
	enc, _ := json.Marshal(regs)
	t.Logf("query-qmp-schema %d bytes, info registers -a (48 vCPUs) %d bytes on the wire", len(raw), len(enc))
	assert.Greater(t, len(enc), 64<<10, "info registers -a for 48 vCPUs exceeds 64 KiB")
	assert.Equal(t, 48, strings.Count(regs, "CPU#"))
	// The session is still usable after the big replies.
	require.NoError(t, q.Execute(ctx, "query-status", nil, nil))

	// A MaxMessage below the reply size ends the connection with a
	// qmp.ProtocolError instead of truncating.
	// (QMP serves one client at a time: close the first session.)
	require.NoError(t, q.Close())
	qs, err := qmp.Dial(ctx, cfg.QMPSocket, qmp.Options{MaxMessage: 32 << 10})
	require.NoError(t, err)
	defer qs.Close()
	_, err = qs.ExecuteRaw(ctx, "query-qmp-schema", nil)
	require.ErrorIs(t, err, qmp.ErrDisconnected)
	var pe *qmp.ProtocolError
	require.ErrorAs(t, err, &pe)
	assert.Contains(t, pe.Msg, "32768-byte limit")
}

// TestGoQEMULargeReplyGap documents why QMP has its own transport: go-qemu's
// SocketMonitor cannot take the same real reply and is broken afterwards.
func TestGoQEMULargeReplyGap(t *testing.T) {
	dir := shortTempDir(t)
	_, cfg := startIdleQEMU(t, dir)
	mon, err := goqmp.NewSocketMonitor("unix", cfg.QMPSocket, 2*time.Second)
	require.NoError(t, err)
	require.NoError(t, mon.Connect())
	defer mon.Disconnect()
	_, err = mon.Run([]byte(`{"execute":"query-qmp-schema"}`))
	require.Error(t, err, "go-qemu handled a >64 KiB reply: the workaround may no longer be needed")
	assert.Contains(t, err.Error(), "token too long")
}

// TestQMPCommandTimeoutAndLateReply: QEMU frozen with SIGSTOP does not
// answer; the command times out; after SIGCONT the late reply is not
// given to the next command.
func TestQMPCommandTimeoutAndLateReply(t *testing.T) {
	dir := shortTempDir(t)
	p, cfg := startIdleQEMU(t, dir)
	q := dialTest(t, cfg.QMPSocket, qmp.Options{})
	require.NoError(t, syscall.Kill(p.Pid(), syscall.SIGSTOP))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := q.HMP(ctx, "info version")
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, syscall.Kill(p.Pid(), syscall.SIGCONT))
	var st struct {
		Status string `json:"status"`
	}
	require.NoError(t, q.Execute(context.Background(), "query-status", nil, &st))
	assert.Equal(t, "prelaunch", st.Status)

	// Default CommandTimeout applies without a deadline in ctx.
	// (QMP serves one client at a time: close the first session.)
	require.NoError(t, q.Close())
	q2, err := qmp.Dial(context.Background(), cfg.QMPSocket, qmp.Options{CommandTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	defer q2.Close()
	require.NoError(t, syscall.Kill(p.Pid(), syscall.SIGSTOP))
	defer syscall.Kill(p.Pid(), syscall.SIGCONT)
	start := time.Now()
	err = q2.Execute(context.Background(), "query-status", nil, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
}

// TestQMPKilledMidCommand: QEMU dies while a command is in flight.
func TestQMPKilledMidCommand(t *testing.T) {
	dir := shortTempDir(t)
	p, cfg := startIdleQEMU(t, dir)
	q := dialTest(t, cfg.QMPSocket, qmp.Options{CommandTimeout: time.Minute})
	require.NoError(t, syscall.Kill(p.Pid(), syscall.SIGSTOP)) // the command cannot be answered
	errc := make(chan error, 1)
	go func() { _, err := q.HMP(context.Background(), "info registers"); errc <- err }()
	time.Sleep(200 * time.Millisecond)
	p.Kill()
	select {
	case err := <-errc:
		require.ErrorIs(t, err, qmp.ErrDisconnected)
	case <-time.After(10 * time.Second):
		t.Fatal("command still blocked 10 s after QEMU was killed")
	}
	waitEvent(t, q.Events(), qmp.EventDisconnected, 5*time.Second)
	select {
	case <-q.Done():
	default:
		t.Fatal("Done not closed after the connection was lost")
	}
	require.Error(t, q.Err())
	// Later commands fail at once.
	err := q.Execute(context.Background(), "query-status", nil, nil)
	require.ErrorIs(t, err, qmp.ErrDisconnected)
}

// TestQMPReconnect: QEMU restarted on the same socket path.
func TestQMPReconnect(t *testing.T) {
	dir := shortTempDir(t)
	p, cfg := startIdleQEMU(t, dir)
	q := dialTest(t, cfg.QMPSocket, qmp.Options{AutoReconnect: true})
	ctx := context.Background()
	require.NoError(t, q.Execute(ctx, "query-status", nil, nil))
	p.Kill()
	waitEvent(t, q.Events(), qmp.EventDisconnected, 5*time.Second)
	// Nothing listens: the command fails, reporting the redial.
	err := q.Execute(ctx, "query-status", nil, nil)
	require.ErrorIs(t, err, qmp.ErrDisconnected)
	assert.Contains(t, err.Error(), "reconnect")

	p2, err := Start(ctx, cfg, StartOptions{})
	require.NoError(t, err)
	defer p2.Kill()
	var st struct {
		Status string `json:"status"`
	}
	require.NoError(t, q.Execute(ctx, "query-status", nil, &st))
	assert.Equal(t, "prelaunch", st.Status)
	waitEvent(t, q.Events(), qmp.EventReconnected, 5*time.Second)
	require.NoError(t, q.Execute(ctx, "cont", nil, nil))
	waitEvent(t, q.Events(), qmp.EventResume, 5*time.Second)

	// Close ends the events stream and later commands.
	require.NoError(t, q.Close())
	for range q.Events() {
	}
	require.ErrorIs(t, q.Execute(ctx, "query-status", nil, nil), qmp.ErrClosed)
}
