package qemuhook

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/acpidiag/acpidiag/region"
	"github.com/acpidiag/acpidiag/ssdt"
)

// Machine is a QEMU machine type qemuhook knows how to wire; "" means
// MachineQ35.
type Machine string

// Machine types qemuhook knows how to wire (region's placement rules know
// their built-in devices).
const (
	MachineQ35 Machine = region.MachineQ35
	MachinePC  Machine = region.MachinePC
)

// Validate returns a *ConfigError naming field "Machine" unless m is ""
// or a known machine type.
func (m Machine) Validate() error {
	if m == "" {
		return nil
	}
	if err := (region.Target{Machine: string(m)}).Validate(); err != nil {
		return placementErr("", err)
	}
	return nil
}

// Firmware is the guest firmware; "" means FirmwareSeaBIOS.
type Firmware string

// Firmware choices.
const (
	FirmwareSeaBIOS Firmware = "seabios"
	FirmwareOVMF    Firmware = "ovmf"
)

// Validate returns a *ConfigError naming field "Firmware" unless f is ""
// or a known firmware.
func (f Firmware) Validate() error {
	switch f {
	case "", FirmwareSeaBIOS, FirmwareOVMF:
		return nil
	}
	return cfgErr("Firmware", "unknown firmware %q (want %q or %q)", string(f), FirmwareSeaBIOS, FirmwareOVMF)
}

// Accel is QEMU's accelerator list (-machine accel=): one accelerator or
// several separated by ':' tried in order, e.g. "kvm:tcg"; "" means
// AccelTCG.
type Accel string

// Accelerators (see PLATFORM.md on KVM).
const (
	AccelTCG Accel = "tcg"
	AccelKVM Accel = "kvm"
	AccelXen Accel = "xen"
)

// Validate returns a *ConfigError naming field "Accel" unless a is "" or
// a ':'-separated list of known accelerators.
func (a Accel) Validate() error {
	if a == "" {
		return nil
	}
	for _, p := range strings.Split(string(a), ":") {
		switch Accel(p) {
		case AccelTCG, AccelKVM, AccelXen:
		default:
			return cfgErr("Accel", "unknown accelerator %q in %q (want %q, %q or %q, ':'-separated)", p, string(a), AccelTCG, AccelKVM, AccelXen)
		}
	}
	return nil
}

// Default OVMF images (Debian package ovmf).
const (
	DefaultOVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	DefaultOVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// QEMU object and device ids used by the generated arguments. Extra
// arguments must not reuse them.
const (
	idRegion  = "acpidiag-region"
	idIvshmem = "acpidiag-ivshmem"
	idRAM     = "acpidiag-ram"
	idERST    = "acpidiag-erst"
	idERSTDev = "acpidiag-erstdev"
	idQMP     = "acpidiag-qmp"
	idSerial  = "acpidiag-serial"
)

// BalloonID is the id of the virtio-balloon device Config.Balloon adds;
// its QOM path is "/machine/peripheral/" + BalloonID (metrics reads the
// guest's memory statistics there).
const BalloonID = "acpidiag-balloon"

// ERSTSize is the size of the ACPI ERST backing file qemuhook configures
// (64 KiB: 7 usable 8 KiB record slots, PLATFORM.md).
const ERSTSize = 0x10000

// ConfigError reports an invalid Config or Channel. Field names the
// offending setting (e.g. "Channel.Region.Slot", "Extra[3]").
type ConfigError struct {
	Field string
	Msg   string
	Err   error // underlying cause, if any
}

func (e *ConfigError) Error() string {
	s := "qemuhook: " + e.Field + ": " + e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ConfigError) Unwrap() error { return e.Err }

func cfgErr(field, format string, a ...any) *ConfigError {
	return &ConfigError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Channel describes how the diagnostic channel is wired into one VM: the
// SSDT file, where the region lives (Region.Placement) and the host file
// backing it.
type Channel struct {
	// SSDTPath is the diagnostic SSDT (ssdt.Build output) given to
	// -acpitable.
	SSDTPath string
	// Region is the configuration the SSDT was built with; its Placement,
	// Slot, Address and Size decide the QEMU side.
	Region ssdt.Config
	// BackingPath is the host file that backs the region. With the ivshmem
	// placement it is the region itself (Region.Size bytes); with the fixed
	// placement it backs the whole guest RAM and the region is at file
	// offset Region.Address.
	BackingPath string
	// Machine is MachineQ35 (default) or MachinePC; it selects the PCI
	// root bus name.
	Machine Machine
	// MemoryMB is the guest RAM size; only the fixed placement needs it
	// (the RAM backend's size). Config.Args fills it from Config.MemoryMB.
	MemoryMB int
}

// machine returns the machine type with the default applied.
func (c Channel) machine() Machine {
	if c.Machine == "" {
		return MachineQ35
	}
	return c.Machine
}

// RootBus returns the PCI root bus name of the channel's machine type.
func (c Channel) RootBus() string {
	if c.machine() == MachinePC {
		return "pci.0"
	}
	return "pcie.0"
}

// RegionOffset returns the offset of the region inside BackingPath: 0 for
// the ivshmem placement, Region.Address for the fixed placement.
func (c Channel) RegionOffset() int64 {
	if c.Region.Placement == ssdt.PlaceFixed {
		return int64(c.Region.Address)
	}
	return 0
}

// validate checks the parts of the channel that need no other context;
// the region's placement, size and slot follow region's rules for the
// channel's machine and memory (region.Spec.ValidateOn).
func (c Channel) validate() error {
	if c.SSDTPath == "" {
		return cfgErr("Channel.SSDTPath", "empty: the SSDT file (ssdt.Build output) is required")
	}
	if c.BackingPath == "" {
		return cfgErr("Channel.BackingPath", "empty: the region needs a host backing file")
	}
	return placementErr("Channel.", c.Region.Spec().ValidateOn(region.Target{Machine: string(c.machine()), MemoryMB: c.MemoryMB}))
}

// placementErr turns a *region.PlacementError into a *ConfigError naming
// the setting under prefix: "Channel." + "Region.Slot", "MemoryMB" ...
func placementErr(prefix string, err error) error {
	var pe *region.PlacementError
	if !errors.As(err, &pe) {
		return err
	}
	field := prefix + "Region." + pe.Field
	if pe.Field == "Machine" || pe.Field == "MemoryMB" {
		field = prefix + pe.Field
	}
	return &ConfigError{Field: field, Msg: pe.Value + ": " + pe.Msg}
}

// Args returns the QEMU arguments that wire the channel into a VM and the
// guest kernel arguments it needs.
//
// Both placements get "-acpitable file=SSDTPath". The ivshmem placement adds
// a shared memory-backend-file of Region.Size over BackingPath and an
// ivshmem-plain device at Region.Slot on the machine's root bus. The fixed
// placement backs the whole guest RAM with BackingPath (share=on,
// -machine memory-backend=...) and returns the kernel argument
// memmap=SIZE$ADDR that keeps the guest kernel off the region.
func (c Channel) Args() (qemuArgs, kernelArgs []string, err error) {
	if err := c.validate(); err != nil {
		return nil, nil, err
	}
	qemuArgs = []string{"-acpitable", "file=" + qemuEscape(c.SSDTPath)}
	switch c.Region.Placement {
	case ssdt.PlaceIvshmem:
		qemuArgs = append(qemuArgs,
			"-object", fmt.Sprintf("memory-backend-file,id=%s,mem-path=%s,size=%d,share=on", idRegion, qemuEscape(c.BackingPath), c.Region.Size),
			"-device", fmt.Sprintf("ivshmem-plain,id=%s,memdev=%s,bus=%s,addr=%#x", idIvshmem, idRegion, c.RootBus(), c.Region.Slot),
		)
	case ssdt.PlaceFixed:
		qemuArgs = append(qemuArgs,
			"-object", fmt.Sprintf("memory-backend-file,id=%s,mem-path=%s,size=%dM,share=on", idRAM, qemuEscape(c.BackingPath), c.MemoryMB),
			"-machine", "memory-backend="+idRAM,
		)
		kernelArgs = append(kernelArgs, fmt.Sprintf("memmap=%s$%#x", memparseSize(c.Region.Size), c.Region.Address))
	}
	return qemuArgs, kernelArgs, nil
}

// memparseSize formats n for the kernel's memparse (K/M/G suffixes).
func memparseSize(n uint64) string {
	switch {
	case n%(1<<30) == 0:
		return fmt.Sprintf("%dG", n>>30)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%dM", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%dK", n>>10)
	}
	return strconv.FormatUint(n, 10)
}

// ShellJoin joins arguments into one line for a POSIX shell, quoting each
// argument that needs it (what ssdtgen qemu-args and diagvm run --dry-run
// print).
func ShellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=,./:+@%", r))
		}) < 0 {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// qemuEscape doubles commas, QEMU's escape inside option values.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Config describes one VM that qemuhook launches.
type Config struct {
	// Machine is MachineQ35 (default) or MachinePC.
	Machine Machine
	// Firmware is FirmwareSeaBIOS (default) or FirmwareOVMF.
	Firmware Firmware
	// OVMFCode and OVMFVars are the OVMF images (defaults DefaultOVMFCode
	// and DefaultOVMFVars). The code image is mapped read-only; the vars
	// template is copied into Workdir by Prepare and the copy is writable.
	OVMFCode, OVMFVars string
	// SMP is the number of vCPUs (default 1).
	SMP int
	// MemoryMB is the guest RAM in MiB (default 512).
	MemoryMB int
	// Kernel, Initrd and Append are the direct-boot kernel, initramfs and
	// command line. When Kernel is set, Args appends the channel's kernel
	// arguments (memmap= for the fixed placement), console=ttyS0 when a
	// serial socket is configured and none is given, and panic=-1 with
	// PVPanic when no panic= is given.
	Kernel, Initrd, Append string
	// Channel wires the region. Channel.Machine and Channel.MemoryMB are
	// overridden by Machine and MemoryMB.
	Channel Channel
	// ERSTPath, when set, is the ACPI ERST backing file (ERSTSize bytes)
	// where the guest kernel's pstore writes its panic log.
	ERSTPath string
	// PVPanic adds the ISA pvpanic device with "-action panic=none", so the
	// kernel reports GUEST_PANICKED and can still write its log to ERST
	// (PLATFORM.md).
	PVPanic bool
	// Balloon adds a virtio-balloon-pci device (id BalloonID) on the root
	// bus, so the guest's stock virtio_balloon driver reports its memory
	// statistics to the host (package metrics). The balloon is never
	// inflated.
	Balloon bool
	// AllowReboot keeps QEMU running when the guest reboots. By default
	// "-no-reboot" turns a reboot (and the reboot after a panic=-1 panic)
	// into a shutdown.
	AllowReboot bool
	// QMPSocket and SerialSocket are unix socket paths QEMU listens on
	// (server=on,wait=off). Empty = not configured.
	QMPSocket, SerialSocket string
	// Workdir holds files qemuhook creates (the OVMF vars copy).
	Workdir string
	// Accel is the accelerator (default AccelTCG; see PLATFORM.md on KVM).
	Accel Accel
	// CPU is the -cpu model. Default: none, except OVMF with the ivshmem
	// placement, where "qemu64,phys-bits=39" keeps BAR2 below 4 GiB.
	CPU string
	// Extra arguments are appended after everything else.
	Extra []string
}

// The defaults of the zero Config fields.
func (c Config) machine() Machine         { return cmp.Or(c.Machine, MachineQ35) }
func (c Config) firmware() Firmware       { return cmp.Or(c.Firmware, FirmwareSeaBIOS) }
func (c Config) smp() int                 { return cmp.Or(c.SMP, 1) }
func (c Config) memoryMB() int            { return cmp.Or(c.MemoryMB, 512) }
func (c Config) accel() Accel             { return cmp.Or(c.Accel, AccelTCG) }
func (c Config) ovmfCode() string         { return cmp.Or(c.OVMFCode, DefaultOVMFCode) }
func (c Config) ovmfVarsTemplate() string { return cmp.Or(c.OVMFVars, DefaultOVMFVars) }

// OVMFVarsPath is the writable OVMF vars copy in Workdir.
func (c Config) OVMFVarsPath() string {
	return filepath.Join(c.Workdir, "OVMF_VARS.fd")
}

// channel returns the channel with the machine-wide settings applied.
func (c Config) channel() Channel {
	ch := c.Channel
	ch.Machine = c.machine()
	ch.MemoryMB = c.memoryMB()
	return ch
}

// Validate checks the configuration without starting anything: machine,
// firmware and sizes, the channel (placement, slot, size), the region slot
// against the machine's built-in devices and every "-device ...,addr=" in
// Extra, id clashes with Extra, writability of the backing files and
// sockets' directories, presence of the kernel, initrd, SSDT and OVMF
// files, and memory large enough for the fixed placement.
func (c Config) Validate() error {
	if err := (region.Target{Machine: string(c.machine()), MemoryMB: c.MemoryMB}).Validate(); err != nil {
		return placementErr("", err)
	}
	if err := c.Accel.Validate(); err != nil {
		return err
	}
	if err := c.Firmware.Validate(); err != nil {
		return err
	}
	switch c.firmware() {
	case FirmwareSeaBIOS:
	case FirmwareOVMF:
		if err := readable(c.ovmfCode()); err != nil {
			return &ConfigError{Field: "OVMFCode", Msg: "OVMF code image missing (install the ovmf package)", Err: err}
		}
		if err := readable(c.ovmfVarsTemplate()); err != nil {
			return &ConfigError{Field: "OVMFVars", Msg: "OVMF vars template missing (install the ovmf package)", Err: err}
		}
		if c.Workdir == "" {
			return cfgErr("Workdir", "empty: OVMF needs a writable copy of its vars image")
		}
	}
	if c.SMP < 0 || c.SMP > 255 {
		return cfgErr("SMP", "%d vCPUs is out of range 1..255", c.SMP)
	}
	if c.Kernel != "" {
		if err := readable(c.Kernel); err != nil {
			return &ConfigError{Field: "Kernel", Msg: "not readable", Err: err}
		}
	} else if c.Initrd != "" || c.Append != "" {
		return cfgErr("Kernel", "empty, but Initrd or Append is set (they need a direct-boot kernel)")
	}
	if c.Initrd != "" {
		if err := readable(c.Initrd); err != nil {
			return &ConfigError{Field: "Initrd", Msg: "not readable", Err: err}
		}
	}
	ch := c.channel()
	if err := ch.validate(); err != nil {
		return err
	}
	if err := readable(ch.SSDTPath); err != nil {
		return &ConfigError{Field: "Channel.SSDTPath", Msg: "not readable", Err: err}
	}
	if st, err := os.Stat(ch.SSDTPath); err == nil && (st.Size() < 36 || st.Size() > 65535) {
		return cfgErr("Channel.SSDTPath", "%d bytes: an ACPI table given to -acpitable must be 36..65535 bytes", st.Size())
	}
	if err := writableFile(ch.BackingPath); err != nil {
		return &ConfigError{Field: "Channel.BackingPath", Msg: "backing file not writable", Err: err}
	}
	if c.ERSTPath != "" {
		if err := writableFile(c.ERSTPath); err != nil {
			return &ConfigError{Field: "ERSTPath", Msg: "ERST backing file not writable", Err: err}
		}
		if ch.Region.Placement == ssdt.PlaceIvshmem && c.ERSTPath == ch.BackingPath {
			return cfgErr("ERSTPath", "same file as Channel.BackingPath")
		}
	}
	for _, s := range []struct{ field, path string }{{"QMPSocket", c.QMPSocket}, {"SerialSocket", c.SerialSocket}} {
		if s.path == "" {
			continue
		}
		if len(s.path) > 107 {
			return cfgErr(s.field, "path %q is %d bytes; unix socket paths are limited to 107", s.path, len(s.path))
		}
		if err := writableDir(filepath.Dir(s.path)); err != nil {
			return &ConfigError{Field: s.field, Msg: "socket directory not writable", Err: err}
		}
	}
	if c.QMPSocket != "" && c.QMPSocket == c.SerialSocket {
		return cfgErr("SerialSocket", "same path as QMPSocket")
	}
	return c.validateExtra(ch)
}

// validateExtra looks for PCI slot and id clashes in Extra.
func (c Config) validateExtra(ch Channel) error {
	ours := map[string]bool{idRegion: true, idIvshmem: true, idRAM: true, idERST: true, idERSTDev: true, idQMP: true, idSerial: true, BalloonID: true}
	for i := 0; i < len(c.Extra); i++ {
		opt := c.Extra[i]
		if !strings.HasPrefix(opt, "-") {
			continue
		}
		name := strings.TrimLeft(opt, "-")
		if i+1 >= len(c.Extra) {
			break
		}
		switch name {
		case "device", "object", "chardev", "netdev":
		default:
			continue
		}
		val := c.Extra[i+1]
		field := fmt.Sprintf("Extra[%d]", i+1)
		props := splitQemuOpts(val)
		if id, ok := props["id"]; ok && ours[id] {
			return cfgErr(field, "id %q is reserved by qemuhook", id)
		}
		if name != "device" || ch.Region.Placement != ssdt.PlaceIvshmem {
			continue
		}
		addr, ok := props["addr"]
		if !ok {
			continue
		}
		if bus, ok := props["bus"]; ok && bus != ch.RootBus() {
			continue
		}
		slot, err := parseDevfnSlot(addr)
		if err != nil {
			return &ConfigError{Field: field, Msg: fmt.Sprintf("cannot parse addr=%q", addr), Err: err}
		}
		if slot == int(ch.Region.Slot) {
			return cfgErr("Channel.Region.Slot", "slot %#x clashes with %s %q (addr=%s)", slot, field, props[""], addr)
		}
	}
	return nil
}

// splitQemuOpts splits "driver,key=val,key2=val2" (",," escapes a comma).
// The leading bare word is stored under "".
func splitQemuOpts(s string) map[string]string {
	out := map[string]string{}
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				cur.WriteByte(',')
				i++
				continue
			}
			parts = append(parts, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(s[i])
	}
	parts = append(parts, cur.String())
	for i, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			if i == 0 {
				out[""] = p
			}
			continue
		}
		out[k] = v
	}
	return out
}

// parseDevfnSlot parses a QEMU PCI addr property ("SS", "SS.F", "0xSS"; hex).
func parseDevfnSlot(s string) (int, error) {
	slot, _, _ := strings.Cut(s, ".")
	slot = strings.TrimPrefix(strings.TrimPrefix(slot, "0x"), "0X")
	n, err := strconv.ParseUint(slot, 16, 8)
	if err != nil {
		return 0, err
	}
	if n > 0x1f {
		return 0, fmt.Errorf("slot %#x above 0x1f", n)
	}
	return int(n), nil
}

func readable(path string) error {
	if path == "" {
		return errors.New("empty path")
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// writableFile checks that path can be written: the file if it exists,
// else its directory.
func writableFile(path string) error {
	if path == "" {
		return errors.New("empty path")
	}
	st, err := os.Stat(path)
	if err == nil {
		if !st.Mode().IsRegular() {
			// A directory, or a named pipe whose open would block.
			return fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
		}
		f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return err
		}
		return f.Close()
	}
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return writableDir(filepath.Dir(path))
}

// writableDir checks that a file can be created in dir.
func writableDir(dir string) error {
	f, err := os.CreateTemp(dir, ".acpidiag-wcheck-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// Args returns the complete QEMU command line (without the program name).
// It validates the parts it needs (Validate does the full check, including
// the file system) and does no I/O; Prepare creates the files it refers to.
func (c Config) Args() ([]string, error) {
	ch := c.channel()
	chArgs, kargs, err := ch.Args()
	if err != nil {
		return nil, err
	}
	machine := c.machine()
	args := []string{
		"-machine", string(machine) + ",accel=" + string(c.accel()),
		"-m", strconv.Itoa(c.memoryMB()),
		"-smp", strconv.Itoa(c.smp()),
		"-nodefaults", "-display", "none",
	}
	cpu := c.CPU
	if c.firmware() == FirmwareOVMF {
		if c.Workdir == "" {
			return nil, cfgErr("Workdir", "empty: OVMF needs a writable copy of its vars image")
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+qemuEscape(c.ovmfCode()),
			"-drive", "if=pflash,format=raw,unit=1,file="+qemuEscape(c.OVMFVarsPath()),
		)
		if ch.Region.Placement == ssdt.PlaceIvshmem {
			// PLATFORM.md: both are needed for BAR2 to land below 4 GiB.
			args = append(args, "-fw_cfg", "name=opt/ovmf/X-PciMmio64Mb,string=0")
			if cpu == "" {
				cpu = "qemu64,phys-bits=39"
			}
		}
	} else if c.firmware() != FirmwareSeaBIOS {
		return nil, cfgErr("Firmware", "unknown firmware %q", c.Firmware)
	}
	if cpu != "" {
		args = append(args, "-cpu", cpu)
	}
	args = append(args, chArgs...)
	if c.ERSTPath != "" {
		args = append(args,
			"-object", fmt.Sprintf("memory-backend-file,id=%s,mem-path=%s,size=%#x,share=on", idERST, qemuEscape(c.ERSTPath), ERSTSize),
			"-device", fmt.Sprintf("acpi-erst,id=%s,memdev=%s", idERSTDev, idERST),
		)
	}
	if c.PVPanic {
		args = append(args, "-device", "pvpanic", "-action", "panic=none")
	}
	if c.Balloon {
		args = append(args, "-device", fmt.Sprintf("virtio-balloon-pci,id=%s,bus=%s", BalloonID, ch.RootBus()))
	}
	if !c.AllowReboot {
		args = append(args, "-no-reboot")
	}
	if c.QMPSocket != "" {
		args = append(args,
			"-chardev", fmt.Sprintf("socket,id=%s,path=%s,server=on,wait=off", idQMP, qemuEscape(c.QMPSocket)),
			"-mon", "chardev="+idQMP+",mode=control",
		)
	}
	if c.SerialSocket != "" {
		args = append(args,
			"-chardev", fmt.Sprintf("socket,id=%s,path=%s,server=on,wait=off", idSerial, qemuEscape(c.SerialSocket)),
			"-serial", "chardev:"+idSerial,
		)
	}
	if c.Kernel != "" {
		args = append(args, "-kernel", c.Kernel)
		if c.Initrd != "" {
			args = append(args, "-initrd", c.Initrd)
		}
		if app := c.kernelCmdline(kargs); app != "" {
			args = append(args, "-append", app)
		}
	}
	args = append(args, c.Extra...)
	return args, nil
}

// kernelCmdline builds the -append string.
func (c Config) kernelCmdline(channelArgs []string) string {
	words := strings.Fields(c.Append)
	has := func(prefix string) bool {
		for _, w := range words {
			if strings.HasPrefix(w, prefix) {
				return true
			}
		}
		return false
	}
	var add []string
	if c.SerialSocket != "" && !has("console=") {
		add = append(add, "console=ttyS0")
	}
	if c.PVPanic && !has("panic=") {
		add = append(add, "panic=-1")
	}
	add = append(add, channelArgs...)
	if len(add) == 0 {
		return c.Append
	}
	if c.Append == "" {
		return strings.Join(add, " ")
	}
	return c.Append + " " + strings.Join(add, " ")
}

// Prepare creates what the arguments refer to and QEMU does not create
// itself: Workdir and the writable OVMF vars copy (kept if it exists); and
// it preallocates the file-backed guest memory (BackingFiles: the region
// and the ERST store) after checking its filesystem's free space, so that
// a full disk fails the start (ErrNoSpace) instead of killing QEMU with
// SIGBUS when the guest writes there, e.g. its panic log.
func (c Config) Prepare() error {
	if c.Workdir != "" {
		if err := os.MkdirAll(c.Workdir, 0o755); err != nil {
			return fmt.Errorf("qemuhook: workdir: %w", err)
		}
	}
	// A full disk fails here, before the guest runs, not in its panic.
	if err := PreallocateBackingFiles(c.BackingFiles()); err != nil {
		return err
	}
	if c.firmware() == FirmwareOVMF {
		dst := c.OVMFVarsPath()
		if _, err := os.Stat(dst); err == nil {
			return nil
		}
		b, err := os.ReadFile(c.ovmfVarsTemplate())
		if err != nil {
			return fmt.Errorf("qemuhook: OVMF vars template: %w", err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return fmt.Errorf("qemuhook: OVMF vars copy: %w", err)
		}
	}
	return nil
}
