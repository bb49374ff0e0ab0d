package qemuhook

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/qmp"
	"github.com/acpidiag/acpidiag/ssdt"
)

func TestChannelArgsIvshmemGolden(t *testing.T) {
	cfg := ssdt.DefaultConfig()
	for _, tc := range []struct {
		machine Machine
		bus     string
	}{{"", "pcie.0"}, {"q35", "pcie.0"}, {"pc", "pci.0"}} {
		ch := Channel{SSDTPath: "/w/diag.aml", Region: cfg, BackingPath: "/dev/shm/a,b", Machine: tc.machine}
		q, k, err := ch.Args()
		require.NoError(t, err)
		assert.Equal(t, []string{
			"-acpitable", "file=/w/diag.aml",
			"-object", "memory-backend-file,id=acpidiag-region,mem-path=/dev/shm/a,,b,size=65536,share=on",
			"-device", "ivshmem-plain,id=acpidiag-ivshmem,memdev=acpidiag-region,bus=" + tc.bus + ",addr=0x10",
		}, q)
		assert.Empty(t, k)
		assert.Equal(t, int64(0), ch.RegionOffset())
	}
}

func TestChannelArgsFixedGolden(t *testing.T) {
	cfg := ssdt.DefaultConfig()
	cfg.Placement = ssdt.PlaceFixed
	cfg.Address = 0x10000000
	ch := Channel{SSDTPath: "/w/diag.aml", Region: cfg, BackingPath: "/w/ram", MemoryMB: 512}
	q, k, err := ch.Args()
	require.NoError(t, err)
	assert.Equal(t, []string{
		"-acpitable", "file=/w/diag.aml",
		"-object", "memory-backend-file,id=acpidiag-ram,mem-path=/w/ram,size=512M,share=on",
		"-machine", "memory-backend=acpidiag-ram",
	}, q)
	assert.Equal(t, []string{"memmap=64K$0x10000000"}, k)
	assert.Equal(t, int64(0x10000000), ch.RegionOffset())
}

func TestChannelArgsErrors(t *testing.T) {
	base := func() Channel {
		return Channel{SSDTPath: "/w/diag.aml", Region: ssdt.DefaultConfig(), BackingPath: "/w/r"}
	}
	fixed := func(addr uint64, mem int) Channel {
		c := base()
		c.Region.Placement = ssdt.PlaceFixed
		c.Region.Address = addr
		c.MemoryMB = mem
		return c
	}
	for name, tc := range map[string]struct {
		ch    Channel
		field string
		msg   string
	}{
		"slot 0x1f q35":   {func() Channel { c := base(); c.Region.Slot = 0x1f; return c }(), "Channel.Region.Slot", "ICH9"},
		"slot 1 pc":       {func() Channel { c := base(); c.Machine = "pc"; c.Region.Slot = 1; return c }(), "Channel.Region.Slot", "PIIX3"},
		"slot 0":          {func() Channel { c := base(); c.Region.Slot = 0; return c }(), "Channel.Region.Slot", "not a usable"},
		"slot 0x20":       {func() Channel { c := base(); c.Region.Slot = 0x20; return c }(), "Channel.Region.Slot", "not a usable"},
		"size not pow2":   {func() Channel { c := base(); c.Region.Size = 0x3000; return c }(), "Channel.Region.Size", "power of two"},
		"machine":         {func() Channel { c := base(); c.Machine = "microvm"; return c }(), "Channel.Machine", "microvm"},
		"no ssdt":         {func() Channel { c := base(); c.SSDTPath = ""; return c }(), "Channel.SSDTPath", "required"},
		"no backing":      {func() Channel { c := base(); c.BackingPath = ""; return c }(), "Channel.BackingPath", "backing"},
		"fixed small mem": {fixed(0x10000000, 256), "Channel.MemoryMB", "too small"},
		"fixed no mem":    {fixed(0x10000000, 0), "Channel.MemoryMB", "must be set"},
		"fixed low":       {fixed(0x1000, 512), "Channel.Region.Address", "first MiB"},
		"fixed high":      {fixed(0xc0000000, 4096), "Channel.Region.Address", "above 2 GiB"},
		"fixed unaligned": {fixed(0x10000800, 512), "Channel.Region.Address", "page aligned"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := tc.ch.Args()
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.field, ce.Field)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

// testSSDT writes the diagnostic SSDT for rc (ssdt.Build) into dir.
func testSSDT(t testing.TB, dir string, rc ssdt.Config) string {
	t.Helper()
	b, err := ssdt.Build(rc)
	require.NoError(t, err)
	p := filepath.Join(dir, "diag.aml")
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}

func TestConfigArgsGolden(t *testing.T) {
	rc := ssdt.DefaultConfig()
	cfg := Config{
		Machine: "q35", SMP: 2, MemoryMB: 256,
		Kernel: "/k/vmlinuz", Initrd: "/k/initrd", Append: "quiet",
		Channel:  Channel{SSDTPath: "/w/diag.aml", Region: rc, BackingPath: "/w/region"},
		ERSTPath: "/w/erst", PVPanic: true,
		QMPSocket: "/w/qmp.sock", SerialSocket: "/w/serial.sock",
		Extra: []string{"-device", "virtio-rng-pci,addr=0x3"},
	}
	args, err := cfg.Args()
	require.NoError(t, err)
	assert.Equal(t, []string{
		"-machine", "q35,accel=tcg", "-m", "256", "-smp", "2", "-nodefaults", "-display", "none",
		"-acpitable", "file=/w/diag.aml",
		"-object", "memory-backend-file,id=acpidiag-region,mem-path=/w/region,size=65536,share=on",
		"-device", "ivshmem-plain,id=acpidiag-ivshmem,memdev=acpidiag-region,bus=pcie.0,addr=0x10",
		"-object", "memory-backend-file,id=acpidiag-erst,mem-path=/w/erst,size=0x10000,share=on",
		"-device", "acpi-erst,id=acpidiag-erstdev,memdev=acpidiag-erst",
		"-device", "pvpanic", "-action", "panic=none",
		"-no-reboot",
		"-chardev", "socket,id=acpidiag-qmp,path=/w/qmp.sock,server=on,wait=off", "-mon", "chardev=acpidiag-qmp,mode=control",
		"-chardev", "socket,id=acpidiag-serial,path=/w/serial.sock,server=on,wait=off", "-serial", "chardev:acpidiag-serial",
		"-kernel", "/k/vmlinuz", "-initrd", "/k/initrd", "-append", "quiet console=ttyS0 panic=-1",
		"-device", "virtio-rng-pci,addr=0x3",
	}, args)

	// OVMF + ivshmem: pflash, the vars copy, and both BAR placement knobs.
	cfg = Config{Firmware: "ovmf", Workdir: "/w", Channel: Channel{SSDTPath: "/w/diag.aml", Region: rc, BackingPath: "/w/region"}, AllowReboot: true}
	args, err = cfg.Args()
	require.NoError(t, err)
	assert.Equal(t, []string{
		"-machine", "q35,accel=tcg", "-m", "512", "-smp", "1", "-nodefaults", "-display", "none",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
		"-drive", "if=pflash,format=raw,unit=1,file=/w/OVMF_VARS.fd",
		"-fw_cfg", "name=opt/ovmf/X-PciMmio64Mb,string=0",
		"-cpu", "qemu64,phys-bits=39",
		"-acpitable", "file=/w/diag.aml",
		"-object", "memory-backend-file,id=acpidiag-region,mem-path=/w/region,size=65536,share=on",
		"-device", "ivshmem-plain,id=acpidiag-ivshmem,memdev=acpidiag-region,bus=pcie.0,addr=0x10",
	}, args)

	// Fixed placement on pc: memmap reaches the kernel command line and the
	// user's own panic= / console= are kept.
	rc.Placement, rc.Address = ssdt.PlaceFixed, 0x10000000
	cfg = Config{Machine: "pc", Kernel: "/k", Append: "console=hvc0 panic=10", PVPanic: true, SerialSocket: "/w/s",
		Channel: Channel{SSDTPath: "/w/diag.aml", Region: rc, BackingPath: "/w/ram"}}
	args, err = cfg.Args()
	require.NoError(t, err)
	assert.Equal(t, "console=hvc0 panic=10 memmap=64K$0x10000000", args[len(args)-1])
	assert.Contains(t, args, "memory-backend-file,id=acpidiag-ram,mem-path=/w/ram,size=512M,share=on")
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	table := testSSDT(t, dir, ssdt.DefaultConfig())
	tiny := filepath.Join(dir, "tiny.aml")
	require.NoError(t, os.WriteFile(tiny, []byte("SSDT"), 0o644))
	kernel := filepath.Join(dir, "vmlinuz")
	require.NoError(t, os.WriteFile(kernel, []byte("x"), 0o644))
	good := func() Config {
		return Config{Kernel: kernel, Workdir: dir, PVPanic: true,
			Channel:   Channel{SSDTPath: table, Region: ssdt.DefaultConfig(), BackingPath: filepath.Join(dir, "region")},
			QMPSocket: filepath.Join(dir, "q.sock"), SerialSocket: filepath.Join(dir, "s.sock"), ERSTPath: filepath.Join(dir, "erst")}
	}
	require.NoError(t, good().Validate())

	roDir := filepath.Join(dir, "ro")
	require.NoError(t, os.Mkdir(roDir, 0o555))
	roFile := filepath.Join(dir, "rofile")
	require.NoError(t, os.WriteFile(roFile, nil, 0o444))
	rootCanWrite := os.Geteuid() == 0

	for name, tc := range map[string]struct {
		mod   func(*Config)
		field string
		msg   string
		root  bool // the check is about permissions root ignores
	}{
		"extra slot clash":        {func(c *Config) { c.Extra = []string{"-device", "virtio-rng-pci,bus=pcie.0,addr=0x10.0"} }, "Channel.Region.Slot", "Extra[1]", false},
		"extra slot clash no bus": {func(c *Config) { c.Extra = []string{"-device", "e1000,addr=10"} }, "Channel.Region.Slot", "e1000", false},
		"extra bad addr":          {func(c *Config) { c.Extra = []string{"-device", "e1000,addr=zz"} }, "Extra[1]", "zz", false},
		"extra id clash":          {func(c *Config) { c.Extra = []string{"-object", "memory-backend-ram,id=acpidiag-erst,size=1M"} }, "Extra[1]", "reserved", false},
		"builtin slot clash":      {func(c *Config) { c.Channel.Region.Slot = 0x1f }, "Channel.Region.Slot", "ICH9", false},
		"pc builtin":              {func(c *Config) { c.Machine = "pc"; c.Channel.Region.Slot = 1 }, "Channel.Region.Slot", "PIIX3", false},
		"ovmf missing":            {func(c *Config) { c.Firmware = "ovmf"; c.OVMFCode = filepath.Join(dir, "nope.fd") }, "OVMFCode", "ovmf package", false},
		"firmware":                {func(c *Config) { c.Firmware = "coreboot" }, "Firmware", "coreboot", false},
		"kernel missing":          {func(c *Config) { c.Kernel = filepath.Join(dir, "nokernel") }, "Kernel", "not readable", false},
		"initrd without kernel":   {func(c *Config) { c.Kernel = ""; c.Initrd = kernel }, "Kernel", "Initrd", false},
		"ssdt tiny":               {func(c *Config) { c.Channel.SSDTPath = tiny }, "Channel.SSDTPath", "36..65535", false},
		"ssdt missing":            {func(c *Config) { c.Channel.SSDTPath = filepath.Join(dir, "none.aml") }, "Channel.SSDTPath", "not readable", false},
		"backing dir ro":          {func(c *Config) { c.Channel.BackingPath = filepath.Join(roDir, "r") }, "Channel.BackingPath", "not writable", true},
		"backing file ro":         {func(c *Config) { c.Channel.BackingPath = roFile }, "Channel.BackingPath", "not writable", true},
		"backing missing dir":     {func(c *Config) { c.Channel.BackingPath = filepath.Join(dir, "no", "r") }, "Channel.BackingPath", "not writable", false},
		"erst same as region":     {func(c *Config) { c.ERSTPath = c.Channel.BackingPath }, "ERSTPath", "same file", false},
		"socket too long":         {func(c *Config) { c.QMPSocket = filepath.Join(dir, strings.Repeat("q", 120)) }, "QMPSocket", "107", false},
		"sockets equal":           {func(c *Config) { c.SerialSocket = c.QMPSocket }, "SerialSocket", "same path", false},
		"fixed mem": {func(c *Config) {
			c.Channel.Region.Placement = ssdt.PlaceFixed
			c.Channel.Region.Address = 0x10000000
			c.MemoryMB = 128
		}, "Channel.MemoryMB", "too small", false},
		"smp": {func(c *Config) { c.SMP = 300 }, "SMP", "300", false},
	} {
		t.Run(name, func(t *testing.T) {
			if tc.root && rootCanWrite {
				t.Skip("running as root: permission bits do not stop root")
			}
			c := good()
			tc.mod(&c)
			err := c.Validate()
			var ce *ConfigError
			require.ErrorAs(t, err, &ce, "%v", err)
			assert.Equal(t, tc.field, ce.Field, "%v", err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

// pciDevice is the part of query-pci qemuhook's tests look at.
type pciDevice struct {
	Slot     int    `json:"slot"`
	QdevID   string `json:"qdev_id"`
	ClassInf struct {
		Desc string `json:"desc"`
	} `json:"class_info"`
	ID struct {
		Vendor int `json:"vendor"`
		Device int `json:"device"`
	} `json:"id"`
}

func queryPCI(t *testing.T, q *qmp.Client) []pciDevice {
	t.Helper()
	var buses []struct {
		Bus     int         `json:"bus"`
		Devices []pciDevice `json:"devices"`
	}
	require.NoError(t, q.Execute(context.Background(), "query-pci", nil, &buses))
	require.NotEmpty(t, buses)
	return buses[0].Devices
}

// TestArgsRealQEMU starts real QEMU (stopped with -S, nothing to boot) with
// the generated arguments on q35 and pc and checks that the devices are
// where the arguments say.
func TestArgsRealQEMU(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	for _, machine := range []Machine{MachineQ35, MachinePC} {
		t.Run(string(machine), func(t *testing.T) {
			dir := shortTempDir(t)
			rc := ssdt.DefaultConfig()
			rc.Slot = 0x0c
			cfg := Config{Machine: machine, MemoryMB: 128, Workdir: dir, PVPanic: true,
				Channel:   Channel{SSDTPath: testSSDT(t, dir, rc), Region: rc, BackingPath: filepath.Join(dir, "region")},
				ERSTPath:  filepath.Join(dir, "erst"),
				QMPSocket: filepath.Join(dir, "qmp"), SerialSocket: filepath.Join(dir, "serial"),
				Extra: []string{"-S"}}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			p, err := Start(ctx, cfg, StartOptions{})
			require.NoError(t, err)
			defer p.Kill()
			q, err := qmp.Dial(ctx, cfg.QMPSocket, qmp.Options{})
			require.NoError(t, err)
			defer q.Close()

			devs := queryPCI(t, q)
			var ivsh, erst *pciDevice
			for i := range devs {
				switch devs[i].QdevID {
				case idIvshmem:
					ivsh = &devs[i]
				case idERSTDev:
					erst = &devs[i]
				}
			}
			require.NotNil(t, ivsh, "ivshmem not in query-pci: %+v", devs)
			assert.Equal(t, 0x0c, ivsh.Slot)
			assert.Equal(t, 0x1af4, ivsh.ID.Vendor)
			assert.Equal(t, 0x1110, ivsh.ID.Device)
			require.NotNil(t, erst, "acpi-erst not in query-pci")
			assert.NotEqual(t, 0x0c, erst.Slot)

			qtree, err := q.HMP(ctx, "info qtree")
			require.NoError(t, err)
			assert.Contains(t, qtree, `dev: pvpanic`)
			bus := "pcie.0"
			if machine == "pc" {
				bus = "pci.0"
			}
			assert.Contains(t, qtree, "bus: "+bus)

			// The region and ERST backing files exist with the right sizes.
			st, err := os.Stat(cfg.Channel.BackingPath)
			require.NoError(t, err)
			assert.Equal(t, int64(rc.Size), st.Size())
			st, err = os.Stat(cfg.ERSTPath)
			require.NoError(t, err)
			assert.Equal(t, int64(ERSTSize), st.Size())

			// -S: QEMU waits in prelaunch.
			var st2 struct {
				Status string `json:"status"`
			}
			require.NoError(t, q.Execute(ctx, "query-status", nil, &st2))
			assert.Equal(t, "prelaunch", st2.Status)
		})
	}
}

// TestArgsRealQEMUFixedAndOVMF starts QEMU with the fixed placement (RAM
// backed by the region file) and with OVMF, checking QEMU accepts them.
func TestArgsRealQEMUFixedAndOVMF(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	dir := shortTempDir(t)
	rc := ssdt.DefaultConfig()
	rc.Placement, rc.Address = ssdt.PlaceFixed, 0x8000000
	cfg := Config{MemoryMB: 256, Workdir: dir, Firmware: "ovmf",
		Channel:   Channel{SSDTPath: testSSDT(t, dir, rc), Region: rc, BackingPath: filepath.Join(dir, "ram")},
		QMPSocket: filepath.Join(dir, "qmp"), Extra: []string{"-S"}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := Start(ctx, cfg, StartOptions{})
	require.NoError(t, err)
	defer p.Kill()
	q, err := qmp.Dial(ctx, cfg.QMPSocket, qmp.Options{})
	require.NoError(t, err)
	defer q.Close()
	var mem struct {
		Base int64 `json:"base-memory"`
	}
	require.NoError(t, q.Execute(ctx, "query-memory-size-summary", nil, &mem))
	assert.Equal(t, int64(256<<20), mem.Base)
	st, err := os.Stat(cfg.Channel.BackingPath)
	require.NoError(t, err)
	assert.Equal(t, int64(256<<20), st.Size(), "guest RAM is backed by the region file")
	_, err = os.Stat(cfg.OVMFVarsPath())
	require.NoError(t, err, "Prepare copies the OVMF vars")
	out, err := q.HMP(ctx, "info mtree -f")
	require.NoError(t, err)
	assert.Contains(t, out, "system.flash0", "OVMF code is mapped as pflash")
	assert.Contains(t, out, "(prio 0, ram): acpidiag-ram", "guest RAM comes from the region backend")
}

// TestStartReportsQEMUError checks that a QEMU that refuses its arguments
// yields an error carrying its stderr.
func TestStartReportsQEMUError(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	dir := shortTempDir(t)
	rc := ssdt.DefaultConfig()
	cfg := Config{MemoryMB: 128,
		Channel:   Channel{SSDTPath: testSSDT(t, dir, rc), Region: rc, BackingPath: filepath.Join(dir, "region")},
		QMPSocket: filepath.Join(dir, "qmp"), Extra: []string{"-device", "no-such-device-xyz"}}
	_, err := Start(context.Background(), cfg, StartOptions{})
	var ee *ExitError
	require.ErrorAs(t, err, &ee)
	assert.Contains(t, strings.Join(ee.Stderr, "\n"), "no-such-device-xyz")
	assert.False(t, ee.State.Success())
}

// shortTempDir returns a temporary directory with a short path (unix
// socket paths are limited to 107 bytes; t.TempDir can exceed that).
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "qh")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Machine, Firmware and Accel are typed and validated: a bad value is a
// *ConfigError naming its field.
func TestTypedMachineFirmwareAccel(t *testing.T) {
	for _, ok := range []interface{ Validate() error }{Machine(""), MachineQ35, MachinePC, Firmware(""), FirmwareSeaBIOS, FirmwareOVMF,
		Accel(""), AccelTCG, AccelKVM, Accel("kvm:tcg")} {
		assert.NoError(t, ok.Validate(), "%v", ok)
	}
	for field, bad := range map[string]interface{ Validate() error }{"Machine": Machine("virt"), "Firmware": Firmware("uboot"), "Accel": Accel("kvm:hax")} {
		var ce *ConfigError
		require.ErrorAs(t, bad.Validate(), &ce, field)
		assert.Equal(t, field, ce.Field)
	}
	var ce *ConfigError
	require.ErrorAs(t, Config{Accel: "kvm,tcg"}.Validate(), &ce)
	assert.Equal(t, "Accel", ce.Field)
}

// The supervisor's State reuses hostreader.State's names for region
// states; its own states are not region states.
func TestSupervisorStateReusesRegionStates(t *testing.T) {
	for _, rs := range []hostreader.State{hostreader.StateAbsent, hostreader.StateAlive, hostreader.StateStale, hostreader.StateRebooted,
		hostreader.StatePanicked, hostreader.StateCorrupt, hostreader.StateTorn, hostreader.StateUnknown} {
		s := RegionState(rs)
		back, ok := s.Region()
		require.True(t, ok, s)
		assert.Equal(t, rs, back)
	}
	assert.Equal(t, RegionState(hostreader.StatePanicked), StatePanicked)
	for _, s := range []State{StatePanicLog, StatePaused, StateRunning, StateReset, StateShutdown, StateWatchdog, StateExited, StateDisconnected, StateReconnected, "none", ""} {
		_, ok := s.Region()
		assert.False(t, ok, s)
	}
}
