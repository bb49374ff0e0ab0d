package qemuhook

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/qmp"
	"github.com/acpidiag/acpidiag/ssdt"
)

// checkNoLeak fails the test if goroutines started during it are still
// running shortly after it ends.
func checkNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutine leak: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
}

// nextVerdict waits for a verdict matching state and source ("" = any).
func nextVerdict(t *testing.T, ch <-chan Verdict, state State, source Source, within time.Duration, seen *[]Verdict) Verdict {
	t.Helper()
	tm := time.After(within)
	for {
		select {
		case v, ok := <-ch:
			require.True(t, ok, "verdicts closed while waiting for %s/%s; seen %v", state, source, *seen)
			*seen = append(*seen, v)
			t.Logf("verdict: %s", v)
			if (state == "" || v.State == state) && (source == "" || v.Source == source) {
				return v
			}
		case <-tm:
			t.Fatalf("no %s verdict from %s within %v; seen %v", state, source, within, *seen)
		}
	}
}

func idleConfig(t *testing.T, dir string) Config {
	rc := ssdt.DefaultConfig()
	return Config{MemoryMB: 64,
		Channel:   Channel{SSDTPath: testSSDT(t, dir, rc), Region: rc, BackingPath: filepath.Join(dir, "region")},
		QMPSocket: filepath.Join(dir, "qmp"), SerialSocket: filepath.Join(dir, "serial"),
		ERSTPath: filepath.Join(dir, "erst"), Extra: []string{"-S"}}
}

// TestSupervisorLiveGuest drives one real guest through everything the
// supervisor and the diagnostics see: alive; QMP stop reported and the
// region really going stale; cont and alive again; SysRq dumps captured
// from the console; registers; then an NMI panics it (unknown_nmi_panic=1):
// pvpanic, the ERST record with the decoded panic line, QEMU's exit, and
// the region file still readable afterwards.
func TestSupervisorLiveGuest(t *testing.T) {
	checkNoLeak(t)
	dir := shortTempDir(t)
	cfg := guestConfig(t, dir, testguest.BootArgs(testguest.ModeAlive, -1, "unknown_nmi_panic=1"))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s, err := Launch(ctx, cfg, SupervisorOptions{Watch: hostreader.WatchOptions{Interval: 250 * time.Millisecond}})
	require.NoError(t, err)
	defer s.Close()
	var seen []Verdict
	alive := nextVerdict(t, s.Verdicts(), "alive", SourceRegion, 150*time.Second, &seen)
	require.NotNil(t, alive.Region)
	assert.GreaterOrEqual(t, alive.Region.Snapshot.Ticks, uint32(1))

	// stop → paused, then the region goes stale for real; cont → alive.
	require.NoError(t, s.QMP().Execute(ctx, "stop", nil, nil))
	nextVerdict(t, s.Verdicts(), StatePaused, SourceQMP, 10*time.Second, &seen)
	stale := nextVerdict(t, s.Verdicts(), "stale", SourceRegion, 15*time.Second, &seen)
	assert.Greater(t, stale.Region.Age, 3*time.Second)
	require.NoError(t, s.QMP().Execute(ctx, "cont", nil, nil))
	nextVerdict(t, s.Verdicts(), StateRunning, SourceQMP, 10*time.Second, &seen)
	nextVerdict(t, s.Verdicts(), "alive", SourceRegion, 30*time.Second, &seen)

	// Keep draining verdicts while the diagnostics run.
	drained := make(chan []Verdict)
	stopDrain := make(chan struct{})
	go func() {
		var vs []Verdict
		for {
			select {
			case v, ok := <-s.Verdicts():
				if !ok {
					<-stopDrain
					drained <- vs
					return
				}
				vs = append(vs, v)
			case <-stopDrain:
				drained <- vs
				return
			}
		}
	}()
	con := s.Console()
	require.NotNil(t, con)
	_, err = con.WaitFor(ctx, 0, "acpidiag-guest: ready")
	require.NoError(t, err)
	_, err = SysRq(ctx, s.QMP(), con, 'c', SysRqOptions{})
	require.ErrorContains(t, err, "AllowAny")
	_, err = SysRq(ctx, s.QMP(), con, '!', SysRqOptions{})
	require.ErrorContains(t, err, "not a SysRq key")
	// Every safe dump key in this one boot, each with lines only that key
	// prints (its sysrq header and the body of its dump).
	// The capture holds what the console printed after the key, which may
	// include unrelated kernel messages of the same moment (seen: module
	// load errors late in boot), but never another key's dump.
	sysrqStart := time.Now()
	keys := []struct {
		key  byte
		want []string
	}{
		{'t', []string{"sysrq: Show State", "task:init", "task:kthreadd"}},
		{'w', []string{"sysrq: Show Blocked State"}},
		{'l', []string{"sysrq: Show backtrace of all active CPUs", "NMI backtrace for cpu 0"}},
		{'m', []string{"sysrq: Show Memory", "Mem-Info:"}},
		{'p', []string{"sysrq: Show Regs", "CPU: 0 PID:", "RIP:"}},
		{'q', []string{"sysrq: Show clockevent devices & pending hrtimers", "Timer List Version", "now at"}},
		{'z', []string{"sysrq: Dump ftrace buffer", "Dumping ftrace buffer:"}},
	}
	for _, k := range keys {
		out, err := SysRq(ctx, s.QMP(), con, k.key, SysRqOptions{})
		require.NoError(t, err, "sysrq %c", k.key)
		for _, w := range k.want {
			assert.Contains(t, string(out), w, "sysrq %c output:\n%.600s", k.key, out)
		}
		assert.NotContains(t, string(out), "Loglevel set to", "sysrq %c: the output after the key, not the loglevel change", k.key)
		for _, other := range keys {
			if other.key != k.key {
				assert.NotContains(t, string(out), other.want[0], "sysrq %c: another key's dump in the capture", k.key)
			}
		}
		t.Logf("sysrq %c: %d bytes: %.120q", k.key, len(out), out)
	}
	t.Logf("all seven SysRq dumps in %v", time.Since(sysrqStart))
	regs, err := Registers(ctx, s.QMP())
	require.NoError(t, err)
	require.Len(t, regs, 1)
	assert.True(t, regs[0].HasIP)
	assert.Contains(t, regs[0].Text, "RAX=", "a booted Linux runs in 64-bit mode")
	close(stopDrain)
	seen = append(seen, <-drained...)

	// NMI → panic: pvpanic and the kernel's own log from ERST in one
	// panicked verdict, then exit.
	mark := con.Mark()
	require.NoError(t, InjectNMI(ctx, s.QMP()))
	ev := nextVerdict(t, s.Verdicts(), StatePanicked, "", 60*time.Second, &seen)
	assert.Equal(t, SourceERST, ev.Source, "GUEST_PANICKED waits for the ERST record: %v", ev)
	require.NotNil(t, ev.Panic)
	assert.True(t, ev.Panic.PVPanic, "pvpanic announced the panic")
	require.NotNil(t, ev.Event)
	assert.Equal(t, qmp.EventGuestPanicked, ev.Event.Name)
	assert.Equal(t, "run", ev.Event.Action)
	assert.Contains(t, ev.Reason, "pvpanic + ERST: Panic#1: Kernel panic - not syncing")
	assert.Contains(t, ev.Panic.PanicLine, "Kernel panic - not syncing")
	assert.Contains(t, ev.Panic.PanicLine, "NMI")
	assert.Equal(t, "Panic", ev.Panic.Reason)
	assert.NotEmpty(t, ev.Panic.RecordIDs)
	// The console is read by its own goroutine: on a loaded host the
	// ERST-backed verdict can come first (seen: nothing read yet since
	// the NMI), so wait for the text rather than look once.
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = con.WaitFor(cctx, mark, "Kernel panic - not syncing")
	ccancel()
	assert.NoError(t, err, "the panic also reached the console")
	ex := nextVerdict(t, s.Verdicts(), StateExited, SourceProcess, 60*time.Second, &seen)
	require.NotNil(t, ex.Exit)
	assert.Equal(t, 0, ex.Exit.Code)
	assert.True(t, ex.Exit.Expected, "QEMU exited after SHUTDOWN (-no-reboot, panic=-1)")
	for v := range s.Verdicts() {
		seen = append(seen, v)
	}
	<-s.Done()
	sum := s.Summary()
	require.NotNil(t, sum.Panic)
	assert.Equal(t, "erst", sum.Panic.Source)
	assert.Equal(t, StateExited, sum.Last.State)
	assert.Equal(t, uint32(1), sum.Boots)
	assert.GreaterOrEqual(t, sum.Ticks, uint32(2))
	assert.Equal(t, len(seen), sum.Verdicts)
	var states []string
	for _, v := range seen {
		states = append(states, string(v.State)+"/"+string(v.Source))
	}
	assert.Contains(t, states, string(StateShutdown)+"/"+string(SourceQMP))
	panicked := 0
	for _, st := range states {
		if strings.HasPrefix(st, string(StatePanicked)+"/") {
			panicked++
		}
	}
	assert.Equal(t, 1, panicked, "one panicked verdict for one panic: %v", states)

	// The region file survives QEMU: read it on its own.
	r, err := hostreader.OpenRegion(cfg.Channel.BackingPath, hostreader.OpenOptions{})
	require.NoError(t, err)
	defer r.Close()
	snap, err := r.Snapshot()
	require.NoError(t, err)
	assert.Equal(t, uint32(1), snap.Boots)
	assert.Equal(t, sum.Ticks, snap.Ticks)
}

// TestSupervisorUnexpectedExit: QEMU killed from outside is a verdict with
// the signal; the stream then ends.
func TestSupervisorUnexpectedExit(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	checkNoLeak(t)
	dir := shortTempDir(t)
	cfg := idleConfig(t, dir)
	s, err := Launch(context.Background(), cfg, SupervisorOptions{})
	require.NoError(t, err)
	defer s.Close()
	var seen []Verdict
	// Nothing runs (-S): the region has no header.
	nextVerdict(t, s.Verdicts(), "absent", SourceRegion, 10*time.Second, &seen)
	require.NoError(t, syscall.Kill(s.Process().Pid(), syscall.SIGKILL))
	v := nextVerdict(t, s.Verdicts(), StateExited, SourceProcess, 10*time.Second, &seen)
	require.NotNil(t, v.Exit)
	assert.False(t, v.Exit.Expected)
	assert.Equal(t, "killed", v.Exit.Signal)
	assert.Equal(t, -1, v.Exit.Code)
	assert.Contains(t, v.Reason, "unexpectedly")
	_, ok := <-s.Verdicts()
	assert.False(t, ok)
	<-s.Done()
}

// TestSupervisorQEMUErrorStderr: QEMU exiting with an error shows its
// stderr in the exit verdict.
func TestSupervisorContextCancel(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	checkNoLeak(t)
	dir := shortTempDir(t)
	cfg := idleConfig(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Launch(ctx, cfg, SupervisorOptions{})
	require.NoError(t, err)
	p := s.Process()
	var seen []Verdict
	nextVerdict(t, s.Verdicts(), "absent", SourceRegion, 10*time.Second, &seen)
	cancel()
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("supervisor still running 10 s after cancel")
	}
	assert.True(t, p.Exited(), "cancel kills the QEMU it launched")
}

// TestSupervisorAttach: attach to a QEMU someone else started; killing it
// ends the stream with a disconnected verdict; QEMU outlives Close
// otherwise.
func TestSupervisorAttach(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	checkNoLeak(t)
	dir := shortTempDir(t)
	cfg := idleConfig(t, dir)
	p, err := Start(context.Background(), cfg, StartOptions{})
	require.NoError(t, err)
	defer p.Kill()
	ac := AttachConfig{QMPSocket: cfg.QMPSocket, RegionPath: cfg.Channel.BackingPath, ERSTPath: cfg.ERSTPath}
	s, err := Attach(context.Background(), ac, SupervisorOptions{})
	require.NoError(t, err)
	var seen []Verdict
	nextVerdict(t, s.Verdicts(), "absent", SourceRegion, 10*time.Second, &seen)
	require.NoError(t, s.QMP().Execute(context.Background(), "cont", nil, nil))
	nextVerdict(t, s.Verdicts(), StateRunning, SourceQMP, 10*time.Second, &seen)
	require.NoError(t, s.Close())
	assert.False(t, p.Exited(), "attach mode leaves QEMU running")

	s, err = Attach(context.Background(), ac, SupervisorOptions{})
	require.NoError(t, err)
	defer s.Close()
	p.Kill()
	v := nextVerdict(t, s.Verdicts(), StateDisconnected, SourceQMP, 10*time.Second, &seen)
	assert.True(t, strings.HasPrefix(v.Reason, "QMP connection lost"))
	_, ok := <-s.Verdicts()
	assert.False(t, ok)

	_, err = Attach(context.Background(), AttachConfig{RegionPath: "x"}, SupervisorOptions{})
	assert.ErrorContains(t, err, "QMPSocket")
	_, err = Attach(context.Background(), AttachConfig{QMPSocket: "x"}, SupervisorOptions{})
	assert.ErrorContains(t, err, "RegionPath")
}

// TestSupervisorAttachReconnect: with AttachConfig.Reconnect, QEMU killed
// under an attached supervisor is a disconnected verdict and the stream
// goes on (region still watched); a new QEMU on the same QMP socket path is
// found by the re-dial, reported as reconnected, and QMP commands, QMP
// events and the serial console work again through the supervisor. Close
// during a re-dial stops it at once without leaks.
func TestSupervisorAttachReconnect(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	checkNoLeak(t)
	dir := shortTempDir(t)
	cfg := idleConfig(t, dir)
	p1, err := Start(context.Background(), cfg, StartOptions{})
	require.NoError(t, err)
	defer p1.Kill()
	ac := AttachConfig{QMPSocket: cfg.QMPSocket, RegionPath: cfg.Channel.BackingPath, ERSTPath: cfg.ERSTPath,
		SerialSocket: cfg.SerialSocket, Reconnect: true}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Attach(ctx, ac, SupervisorOptions{Watch: hostreader.WatchOptions{Interval: 100 * time.Millisecond}})
	require.NoError(t, err)
	defer s.Close()
	var seen []Verdict
	nextVerdict(t, s.Verdicts(), "absent", SourceRegion, 10*time.Second, &seen)
	con1 := s.Console()
	require.NotNil(t, con1)
	st, err := QueryStatus(ctx, s.QMP())
	require.NoError(t, err)
	assert.Equal(t, "prelaunch", st.Status)

	require.NoError(t, syscall.Kill(p1.Pid(), syscall.SIGKILL))
	lost := nextVerdict(t, s.Verdicts(), StateDisconnected, SourceQMP, 10*time.Second, &seen)
	assert.Contains(t, lost.Reason, "QMP connection lost")
	assert.Contains(t, lost.Reason, "re-dialling "+cfg.QMPSocket)
	<-p1.Done()
	// Nothing listens now (the socket file is stale): the supervisor keeps
	// going, re-dialling, and commands fail as disconnected.
	time.Sleep(time.Second)
	select {
	case <-s.Done():
		t.Fatal("supervision ended when QMP was lost, despite Reconnect")
	default:
	}
	_, err = QueryStatus(ctx, s.QMP())
	require.ErrorIs(t, err, qmp.ErrDisconnected)

	// A new QEMU on the same paths. NoWait: Start's own QMP probe would
	// compete with the supervisor's re-dial for QEMU's single QMP client
	// slot; the reconnected verdict is the proof that it answers.
	p2, err := Start(context.Background(), cfg, StartOptions{NoWait: true})
	require.NoError(t, err)
	defer p2.Kill()
	back := nextVerdict(t, s.Verdicts(), StateReconnected, SourceQMP, 20*time.Second, &seen)
	assert.Contains(t, back.Reason, "QMP reconnected after")
	assert.Contains(t, back.Reason, "QEMU 7.")
	assert.NotContains(t, back.Reason, "console not re-dialled")
	require.NotNil(t, back.Event)
	assert.Equal(t, qmp.EventReconnected, back.Event.Name)
	assert.False(t, p2.Exited(), "QEMU's stderr: %v", p2.Stderr())

	st, err = QueryStatus(ctx, s.QMP())
	require.NoError(t, err)
	assert.Equal(t, "prelaunch", st.Status, "the new QEMU answers (-S)")
	require.NoError(t, s.QMP().Execute(ctx, "cont", nil, nil))
	nextVerdict(t, s.Verdicts(), StateRunning, SourceQMP, 10*time.Second, &seen)
	con2 := s.Console()
	require.NotNil(t, con2)
	assert.NotSame(t, con1, con2, "a new console on the new QEMU")
	select {
	case <-con1.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the old console is still open")
	}
	select {
	case <-con2.Done():
		t.Fatal("the new console has ended")
	default:
	}

	// Lost again, and Close while re-dialling into nothing.
	require.NoError(t, syscall.Kill(p2.Pid(), syscall.SIGKILL))
	nextVerdict(t, s.Verdicts(), StateDisconnected, SourceQMP, 10*time.Second, &seen)
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	require.NoError(t, s.Close())
	assert.Less(t, time.Since(start), 3*time.Second, "Close stops the re-dial at once")
	_, ok := <-s.Verdicts()
	assert.False(t, ok)
	assert.Equal(t, StateDisconnected, s.Summary().Last.State)
}

// TestSupervisorAttachReconnectGuest: a real guest under an attached
// supervisor with Reconnect; its QEMU is killed (the region goes stale while
// nothing runs) and a new QEMU boots the guest again on the same region
// file: reconnected, then the region says rebooted (boot 2) and alive, and
// the new console carries the new boot's output.
func TestSupervisorAttachReconnectGuest(t *testing.T) {
	checkNoLeak(t)
	dir := shortTempDir(t)
	cfg := guestConfig(t, dir, testguest.BootArgs(testguest.ModeAlive, -1))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p1, err := Start(ctx, cfg, StartOptions{})
	require.NoError(t, err)
	defer p1.Kill()
	ac := AttachConfig{QMPSocket: cfg.QMPSocket, RegionPath: cfg.Channel.BackingPath, ERSTPath: cfg.ERSTPath,
		SerialSocket: cfg.SerialSocket, Reconnect: true}
	s, err := Attach(ctx, ac, SupervisorOptions{Watch: hostreader.WatchOptions{Interval: 250 * time.Millisecond}})
	require.NoError(t, err)
	defer s.Close()
	var seen []Verdict
	a1 := nextVerdict(t, s.Verdicts(), "alive", SourceRegion, 150*time.Second, &seen)
	assert.Equal(t, uint32(1), a1.Region.Snapshot.Boots)

	p1.Kill()
	nextVerdict(t, s.Verdicts(), StateDisconnected, SourceQMP, 10*time.Second, &seen)
	nextVerdict(t, s.Verdicts(), "stale", SourceRegion, 15*time.Second, &seen)

	p2, err := Start(ctx, cfg, StartOptions{NoWait: true})
	require.NoError(t, err)
	defer p2.Kill()
	nextVerdict(t, s.Verdicts(), StateReconnected, SourceQMP, 20*time.Second, &seen)
	rb := nextVerdict(t, s.Verdicts(), "rebooted", SourceRegion, 150*time.Second, &seen)
	assert.Equal(t, uint32(2), rb.Region.Snapshot.Boots)
	nextVerdict(t, s.Verdicts(), "alive", SourceRegion, 30*time.Second, &seen)
	_, err = s.Console().WaitFor(ctx, 0, "acpidiag-guest: ready")
	require.NoError(t, err, "the new console carries the new boot")
	st, err := QueryStatus(ctx, s.QMP())
	require.NoError(t, err)
	assert.True(t, st.Running)
}

// TestSupervisorAttachReconnectAfterAutoReconnect: a command with
// qmp.Options.AutoReconnect may bring QMP back before the supervisor's own
// re-dial is due; the re-dial then reports the live connection instead of
// dropping it for a new one.
func TestSupervisorAttachReconnectAfterAutoReconnect(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	checkNoLeak(t)
	dir := shortTempDir(t)
	cfg := idleConfig(t, dir)
	cfg.SerialSocket = ""
	p1, err := Start(context.Background(), cfg, StartOptions{})
	require.NoError(t, err)
	defer p1.Kill()
	ac := AttachConfig{QMPSocket: cfg.QMPSocket, RegionPath: cfg.Channel.BackingPath, Reconnect: true,
		ReconnectMin: 6 * time.Second, ReconnectMax: 6 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Attach(ctx, ac, SupervisorOptions{QMP: qmp.Options{AutoReconnect: true}})
	require.NoError(t, err)
	defer s.Close()
	var seen []Verdict
	nextVerdict(t, s.Verdicts(), "absent", SourceRegion, 10*time.Second, &seen)
	p1.Kill()
	nextVerdict(t, s.Verdicts(), StateDisconnected, SourceQMP, 10*time.Second, &seen)
	p2, err := Start(context.Background(), cfg, StartOptions{NoWait: true})
	require.NoError(t, err)
	defer p2.Kill()
	// The command's own redial (AutoReconnect) brings QMP back.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err = QueryStatus(ctx, s.QMP())
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, err, "AutoReconnect within 5 s")
	back := nextVerdict(t, s.Verdicts(), StateReconnected, SourceQMP, 15*time.Second, &seen)
	assert.Contains(t, back.Reason, "(1 attempts)")
	// The connection the command made is the one in use: not dropped.
	select {
	case v := <-s.Verdicts():
		t.Fatalf("unexpected verdict after reconnecting: %v", v)
	case <-time.After(500 * time.Millisecond):
	}
	require.NoError(t, s.QMP().Execute(ctx, "cont", nil, nil))
	nextVerdict(t, s.Verdicts(), StateRunning, SourceQMP, 10*time.Second, &seen)
}

// TestSupervisorPlacements: the region ticks alive with the fixed
// placement (guest RAM backed by the file, memmap= on the kernel command
// line) and with ivshmem under OVMF (BAR2 kept below 4 GiB by the
// generated -fw_cfg and -cpu phys-bits arguments).
func TestSupervisorPlacements(t *testing.T) {
	for _, tc := range []struct {
		name     string
		firmware Firmware
		fixed    bool
	}{{"fixed-seabios", FirmwareSeaBIOS, true}, {"ivshmem-ovmf", FirmwareOVMF, false}} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeak(t)
			dir := shortTempDir(t)
			cfg := guestConfig(t, dir, testguest.BootArgs(testguest.ModeAlive, -1))
			cfg.Firmware = tc.firmware
			if tc.fixed {
				rc := ssdt.DefaultConfig()
				rc.Placement, rc.Address = ssdt.PlaceFixed, 0x8000000
				cfg.Channel = Channel{SSDTPath: testSSDT(t, dir, rc), Region: rc, BackingPath: filepath.Join(dir, "ram")}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			s, err := Launch(ctx, cfg, SupervisorOptions{})
			require.NoError(t, err)
			defer s.Close()
			var seen []Verdict
			v := nextVerdict(t, s.Verdicts(), "alive", SourceRegion, 150*time.Second, &seen)
			assert.Equal(t, uint32(1), v.Region.Snapshot.Boots)
			if tc.fixed {
				assert.Contains(t, strings.Join(s.Process().Args, " "), "memmap=64K$0x8000000")
			}
		})
	}
}

// TestSupervisorERSTWithoutPVPanic: a panic record appearing in the ERST
// store is a verdict on its own (a guest without the pvpanic driver). The
// record is a real one (shared fixture from a real guest crash), copied into
// the store of an attached VM; one that was there before attaching is not
// news.
func TestSupervisorERSTWithoutPVPanic(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	checkNoLeak(t)
	dir := shortTempDir(t)
	cfg := idleConfig(t, dir)
	cfg.ERSTPath = ""
	p, err := Start(context.Background(), cfg, StartOptions{})
	require.NoError(t, err)
	defer p.Kill()
	store := filepath.Join(dir, "store")
	two, err := os.ReadFile(filepath.Join(fixtures.Real(t), "erst", "q35_two_panics_deflate", "erst.backing"))
	require.NoError(t, err)
	one, err := os.ReadFile(filepath.Join(fixtures.Real(t), "erst", "q35_sysrq_deflate", "erst.backing"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(store, one, 0o644))
	s, err := Attach(context.Background(), AttachConfig{QMPSocket: cfg.QMPSocket, RegionPath: cfg.Channel.BackingPath, ERSTPath: store},
		SupervisorOptions{ERSTInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	defer s.Close()
	var seen []Verdict
	nextVerdict(t, s.Verdicts(), "absent", SourceRegion, 10*time.Second, &seen)
	// Nothing new: the store's panic predates the attach. Change a byte of
	// an unused slot so the file differs and is decoded again.
	mod := append([]byte(nil), one...)
	mod[len(mod)-1] ^= 0xff
	require.NoError(t, os.WriteFile(store, mod, 0o644))
	select {
	case v := <-s.Verdicts():
		require.NotEqual(t, SourceERST, v.Source, "old record reported: %v", v)
	case <-time.After(time.Second):
	}
	require.NoError(t, os.WriteFile(store, two, 0o644))
	v := nextVerdict(t, s.Verdicts(), StatePanicked, SourceERST, 10*time.Second, &seen)
	require.NotNil(t, v.Panic)
	assert.NotEmpty(t, v.Panic.RecordIDs)
	assert.True(t, v.Panic.PanicLine != "" || len(v.Panic.OopsLines) > 0)
	t.Logf("new ERST dump: %s#%d %q %q", v.Panic.Reason, v.Panic.Count, v.Panic.PanicLine, v.Panic.OopsLines)
	// The store holds two boots' crashes: Panic#1 of one, Oops#1 and the
	// Panic#2 it led to (oops=panic) of the other. One panicked verdict
	// per crash; the second dump of the same boot is that crash's log.
	oops := nextVerdict(t, s.Verdicts(), StatePanicked, SourceERST, 5*time.Second, &seen)
	require.NotNil(t, oops.Panic)
	assert.Equal(t, "Oops", oops.Panic.Reason)
	log := nextVerdict(t, s.Verdicts(), StatePanicLog, SourceERST, 5*time.Second, &seen)
	assert.Equal(t, "Panic", log.Panic.Reason)
	assert.Equal(t, 2, log.Panic.Count)
	// The region watcher got the evidence: the summary's region verdict
	// says panicked, while the stream does not repeat the panic as a
	// region verdict.
	require.Eventually(t, func() bool {
		rv := s.Summary().Region
		return rv != nil && rv.State == hostreader.StatePanicked && rv.Panic.Source == "erst"
	}, 10*time.Second, 50*time.Millisecond)
	select {
	case v := <-s.Verdicts():
		assert.NotEqual(t, StatePanicked, v.State, "a panic reported twice: %v", v)
	case <-time.After(1500 * time.Millisecond):
	}
}

// TestSupervisorReboot: with AllowReboot the guest's reboot is a QMP reset
// and a "rebooted" region verdict (boot count 2), then alive again.
func TestSupervisorReboot(t *testing.T) {
	checkNoLeak(t)
	dir := shortTempDir(t)
	cfg := guestConfig(t, dir, testguest.BootArgs(testguest.ModeReboot, 3*time.Second))
	cfg.AllowReboot = true
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s, err := Launch(ctx, cfg, SupervisorOptions{Watch: hostreader.WatchOptions{Interval: 250 * time.Millisecond}})
	require.NoError(t, err)
	defer s.Close()
	var seen []Verdict
	nextVerdict(t, s.Verdicts(), "alive", SourceRegion, 150*time.Second, &seen)
	rs := nextVerdict(t, s.Verdicts(), StateReset, SourceQMP, 60*time.Second, &seen)
	assert.True(t, rs.Event.Guest)
	rb := nextVerdict(t, s.Verdicts(), "rebooted", SourceRegion, 150*time.Second, &seen)
	assert.Equal(t, uint32(2), rb.Region.Snapshot.Boots)
	// (The new boot would reboot again: same command line, a reboot loop
	// with a rising boot count; one is enough here.)
	require.NoError(t, s.Close())
	assert.GreaterOrEqual(t, s.Summary().Boots, uint32(2))
}
