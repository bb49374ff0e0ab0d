package region

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// This file holds the one set of rules for where a region may live and how
// big it may be. The SSDT builder (acpi.Config.Validate), the QEMU wiring
// (qemuhook.Channel.Args) and every command line (ssdtgen, ssdtgen
// qemu-args, diagvm run) call them, so the same placement is accepted or
// refused everywhere, with the same message.

// Placement says where the region lives in the guest.
type Placement int

const (
	// Ivshmem puts the region in BAR2 of an ivshmem-plain PCI device on the
	// root bus; the AML finds the BAR at run time. It needs nothing in the
	// guest and is the default.
	Ivshmem Placement = iota
	// Fixed puts the region at a fixed guest-physical address in low RAM
	// (file-backed guest RAM the guest kernel leaves alone, e.g. with
	// memmap=SIZE$ADDR).
	Fixed
)

func (p Placement) String() string {
	switch p {
	case Ivshmem:
		return "ivshmem"
	case Fixed:
		return "fixed"
	}
	return fmt.Sprintf("Placement(%d)", int(p))
}

// Defaults of a placement.
const (
	DefaultSlot = 0x10     // PCI slot of the ivshmem device
	DefaultSize = 64 << 10 // region size in bytes
)

// Machine types whose built-in devices the rules know.
const (
	MachineQ35 = "q35"
	MachinePC  = "pc"
)

// DefaultMachine and DefaultMemoryMB are what a Target's zero values mean
// on the command line (--machine, --memory).
const (
	DefaultMachine  = MachineQ35
	DefaultMemoryMB = 512
)

// MinMemoryMB is the least guest RAM a Target may name.
const MinMemoryMB = 32

// FixedMinAddress is the lowest address of a fixed region: the first MiB is
// the legacy BIOS area.
const FixedMinAddress = 1 << 20

// FixedMaxEnd is where a fixed region must end by: low RAM on every machine
// type (and far below the 4 GiB that 32-bit AML can address).
const FixedMaxEnd = 1 << 31

// FixedReserveTop is how much of the top of low RAM a fixed region keeps
// clear of: SeaBIOS puts the ACPI tables there and OVMF its data.
const FixedReserveTop = 64 << 20

// Spec is a region's placement and size.
type Spec struct {
	// Placement selects ivshmem (the zero value) or a fixed address.
	Placement Placement
	// Slot is the PCI slot (device number) of the ivshmem-plain device on
	// the root bus: 1..31 (ivshmem only).
	Slot uint8
	// Address is the guest-physical address of a fixed region: page
	// aligned, at least FixedMinAddress, Address+Size at most FixedMaxEnd.
	Address uint64
	// Size is the region size in bytes: ValidSize, and a power of two for
	// ivshmem (an ivshmem BAR's size).
	Size uint64
}

// DefaultSpec is ivshmem at slot DefaultSlot, DefaultSize bytes.
func DefaultSpec() Spec { return Spec{Placement: Ivshmem, Slot: DefaultSlot, Size: DefaultSize} }

// Target is the VM a region is placed in: what the machine-dependent rules
// need (the built-in PCI devices, the RAM around a fixed region).
type Target struct {
	// Machine is MachineQ35 or MachinePC.
	Machine string
	// MemoryMB is the guest RAM in MiB (the fixed placement needs it).
	MemoryMB int
}

// PlacementError is a placement, size or target the rules refuse. Field
// names the setting: "Placement", "Slot", "Address", "Size" (Spec) or
// "Machine", "MemoryMB" (Target).
type PlacementError struct {
	Field string // the setting at fault
	Value string // its value, formatted
	Msg   string // what is wrong and what to do
}

func (e *PlacementError) Error() string {
	return fmt.Sprintf("region: %s %s: %s", e.Field, e.Value, e.Msg)
}

func perr(field string, value any, format string, a ...any) *PlacementError {
	var v string
	switch x := value.(type) {
	case string:
		v = strconv.Quote(x)
	case uint64:
		v = fmt.Sprintf("%#x", x)
	case uint8:
		v = fmt.Sprintf("%#x", x)
	default:
		v = fmt.Sprint(x)
	}
	return &PlacementError{Field: field, Value: v, Msg: fmt.Sprintf(format, a...)}
}

// ValidSize reports whether size is a usable region size: at least MinSize,
// a multiple of 4096, and at most 2 GiB.
func ValidSize(size uint64) error {
	switch {
	case size < MinSize:
		return perr("Size", size, "below the minimum region size %d bytes", MinSize)
	case size%4096 != 0:
		return perr("Size", size, "must be a multiple of 4096")
	case size > 1<<31:
		return perr("Size", size, "above 2 GiB, which 32-bit AML cannot address; use a smaller size")
	}
	return nil
}

// Validate checks the rules that hold on every machine and returns a
// *PlacementError for the first one broken. The SSDT builder, which does
// not know the machine, calls it; ValidateOn adds the machine's rules.
func (s Spec) Validate() error {
	switch s.Placement {
	case Ivshmem:
		if err := validSlot(s.Slot); err != nil {
			return err
		}
	case Fixed:
	default:
		return perr("Placement", int(s.Placement), "use Ivshmem or Fixed")
	}
	if err := ValidSize(s.Size); err != nil {
		return err
	}
	if s.Placement == Ivshmem && s.Size&(s.Size-1) != 0 {
		return perr("Size", s.Size, "ivshmem sizes must be a power of two (an ivshmem BAR's size), e.g. 0x10000")
	}
	if s.Placement == Fixed {
		a, end := s.Address, s.Address+s.Size
		switch {
		case a == 0:
			return perr("Address", a, "fixed placement needs a non-zero guest-physical address")
		case a%4096 != 0:
			return perr("Address", a, "must be page aligned (a multiple of 0x1000)")
		case a < FixedMinAddress:
			return perr("Address", a, "inside the first MiB (legacy BIOS area); pick an address such as 0x10000000")
		case a > FixedMaxEnd || end > FixedMaxEnd:
			return perr("Address", a, "region [%#x, %#x) ends above 2 GiB: not in low RAM on every machine type (and 32-bit AML cannot reach above 4 GiB); pick an address at most %#x",
				a, end, uint64(FixedMaxEnd)-s.Size)
		}
	}
	return nil
}

func validSlot(slot uint8) error {
	switch {
	case slot == 0:
		return perr("Slot", slot, "slot 0 is the host bridge, not a usable slot; pick a free slot such as 0x10")
	case slot > 31:
		return perr("Slot", slot, "not a usable PCI slot: slots are 1..31 (0x01..0x1f)")
	}
	return nil
}

// builtinSlots names the root-bus slots a machine type fills with built-in
// devices when QEMU starts with -nodefaults.
func builtinSlots(machine string) map[uint8]string {
	if machine == MachinePC {
		return map[uint8]string{0: "i440FX host bridge", 1: "PIIX3 ISA/IDE/USB/PM"}
	}
	return map[uint8]string{0: "q35 host bridge (MCH)", 0x1f: "ICH9 LPC/SATA/SMBus"}
}

// Validate checks the target alone: a known machine type, and a MemoryMB
// that is 0 (not known; the fixed placement then refuses it) or at least
// MinMemoryMB.
func (t Target) Validate() error {
	switch t.Machine {
	case MachineQ35, MachinePC:
	default:
		return perr("Machine", t.Machine, "unknown machine type (want %q or %q)", MachineQ35, MachinePC)
	}
	if t.MemoryMB < 0 || t.MemoryMB > 0 && t.MemoryMB < MinMemoryMB {
		return perr("MemoryMB", t.MemoryMB, "too small (minimum %d MiB)", MinMemoryMB)
	}
	return nil
}

// ValidateOn checks Validate's rules and those of target t: a known machine
// type, an ivshmem slot free of the machine's built-in devices, and guest
// RAM large enough for a fixed region below the firmware's top of low RAM.
func (s Spec) ValidateOn(t Target) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if err := t.Validate(); err != nil {
		return err
	}
	switch s.Placement {
	case Ivshmem:
		if what, ok := builtinSlots(t.Machine)[s.Slot]; ok {
			return perr("Slot", s.Slot, "clashes with the %s built into machine %q; pick a free slot such as 0x10", what, t.Machine)
		}
	case Fixed:
		if t.MemoryMB <= 0 {
			return perr("MemoryMB", t.MemoryMB, "must be set for the fixed placement (it sizes the RAM backend)")
		}
		low := uint64(t.MemoryMB) << 20
		if low > FixedMaxEnd {
			low = FixedMaxEnd
		}
		end := s.Address + s.Size
		if end+FixedReserveTop > low {
			return perr("MemoryMB", t.MemoryMB, "too small for a fixed region at [%#x, %#x): need at least %d MiB (the top %d MiB of low RAM are left to the firmware)",
				s.Address, end, (end+FixedReserveTop+(1<<20)-1)>>20, FixedReserveTop>>20)
		}
	}
	return nil
}

// ParseSpec parses a region placement as given on a command line:
// "ivshmem" (slot DefaultSlot), "ivshmem:SLOT" (e.g. "ivshmem:0x10") or
// "fixed:ADDR" (e.g. "fixed:0x10000000"). Numbers take Go syntax (0x for
// hex). The slot is checked here (1..31); the rest of the rules when the
// size is known (Validate).
func ParseSpec(s string) (p Placement, slot uint8, addr uint64, err error) {
	p, slot, addr, err = parseSpec(s)
	if err != nil {
		err = fmt.Errorf("region %q: %w", s, err)
	}
	return p, slot, addr, err
}

func parseSpec(s string) (Placement, uint8, uint64, error) {
	kind, arg, hasArg := strings.Cut(s, ":")
	switch kind {
	case "ivshmem":
		if !hasArg {
			return Ivshmem, DefaultSlot, 0, nil
		}
		v, err := strconv.ParseUint(arg, 0, 8)
		if err != nil || v > 31 {
			return 0, 0, 0, fmt.Errorf("slot %q is not a PCI slot number 1..0x1f", arg)
		}
		if err := validSlot(uint8(v)); err != nil {
			return 0, 0, 0, errors.New(err.(*PlacementError).Msg)
		}
		return Ivshmem, uint8(v), 0, nil
	case "fixed":
		if !hasArg || arg == "" {
			return 0, 0, 0, errors.New("fixed needs an address, e.g. fixed:0x10000000")
		}
		v, err := strconv.ParseUint(arg, 0, 64)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("address %q is not a number", arg)
		}
		return Fixed, 0, v, nil
	}
	return 0, 0, 0, errors.New("want ivshmem, ivshmem:SLOT or fixed:ADDR")
}

// ParseSize parses a region size as given on a command line: a number in Go
// syntax ("65536", "0x10000") optionally followed by K, M or G (binary
// multiples: "64K", "1M").
func ParseSize(s string) (uint64, error) {
	v, err := parseSize(s)
	if err != nil {
		err = fmt.Errorf("size %q: %w", s, err)
	}
	return v, err
}

func parseSize(s string) (uint64, error) {
	num, mult := s, uint64(1)
	if len(s) > 0 {
		switch s[len(s)-1] {
		case 'K', 'k':
			num, mult = s[:len(s)-1], 1<<10
		case 'M', 'm':
			num, mult = s[:len(s)-1], 1<<20
		case 'G', 'g':
			num, mult = s[:len(s)-1], 1<<30
		}
	}
	v, err := strconv.ParseUint(num, 0, 64)
	if err != nil {
		return 0, errors.New("want a number with an optional K, M or G suffix (e.g. 64K)")
	}
	if v > (1<<64-1)/mult {
		return 0, errors.New("overflows 64 bits")
	}
	return v * mult, nil
}

// Flags is the command-line form of a placement and its target, the same
// four flags on every command (--region, --size, --machine, --memory).
type Flags struct {
	Region, Size, Machine string
	MemoryMB              int
}

// Register adds the four flags to fs with their defaults and help.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Region, "region", "ivshmem", "where the region is: ivshmem (slot 0x10), ivshmem:SLOT or fixed:ADDR (guest-physical, in low RAM)")
	fs.StringVar(&f.Size, "size", "64K", "region size in bytes, K/M/G suffixes allowed (a power of two for ivshmem, at least 4K)")
	fs.StringVar(&f.Machine, "machine", DefaultMachine, "QEMU machine type: q35 or pc")
	fs.IntVar(&f.MemoryMB, "memory", DefaultMemoryMB, "guest RAM in MiB (fixed placement: size of the RAM backend)")
}

// flagFor names the command-line flag behind a PlacementError field.
var flagFor = map[string]string{"Placement": "--region", "Slot": "--region", "Address": "--region",
	"Size": "--size", "Machine": "--machine", "MemoryMB": "--memory"}

// FlagError is a refused command-line flag: the flag, its value as given,
// and what is wrong. Every command prints it the same way.
type FlagError struct {
	Flag, Value string
	Err         error
}

func (e *FlagError) Error() string {
	v := e.Value
	if v == "" || strings.ContainsAny(v, " \t\"'") {
		v = strconv.Quote(v)
	}
	return fmt.Sprintf("%s %s: %v", e.Flag, v, e.Err)
}

func (e *FlagError) Unwrap() error { return e.Err }

// Parse turns the flags into a Spec and a Target and checks them with
// ValidateOn. Every refusal is a *FlagError naming the flag.
func (f Flags) Parse() (Spec, Target, error) {
	var s Spec
	t := Target{Machine: f.Machine, MemoryMB: f.MemoryMB}
	var err error
	if s.Placement, s.Slot, s.Address, err = parseSpec(f.Region); err != nil {
		return s, t, &FlagError{"--region", f.Region, err}
	}
	if s.Size, err = parseSize(f.Size); err != nil {
		return s, t, &FlagError{"--size", f.Size, err}
	}
	if err := s.ValidateOn(t); err != nil {
		pe := err.(*PlacementError)
		fl := flagFor[pe.Field]
		val := map[string]string{"--region": f.Region, "--size": f.Size, "--machine": f.Machine,
			"--memory": strconv.Itoa(f.MemoryMB)}[fl]
		return s, t, &FlagError{fl, val, fmt.Errorf("%s", pe.Msg)}
	}
	return s, t, nil
}
