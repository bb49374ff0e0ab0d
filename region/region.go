// Package region defines the v1 layout of the shared-memory diagnostic region:
// the one place where every field's offset, width and writer is declared.
//
// The AML generator (package acpi) and the host decoder (package hostreader)
// both derive their offsets from Fields; moving a field here moves it
// everywhere. The layout satisfies the contract in DESIGN.md:
//
//   - little-endian, every field a 32-bit word (AML integers are 32-bit under
//     QEMU's revision-1 DSDT);
//   - a header (magic, version, header size, region size) so a reader can
//     refuse a region it does not understand;
//   - a seqlock word the AML makes odd before and even after each update;
//   - per-tick words (tick count since boot, boot count, period, Timer() low
//     word, echo of the host stamp);
//   - a host-owned area (host stamp, mailbox command) and the guest's answer;
//   - application heartbeat slots written directly by guest software.
//
// The package has no dependencies beyond the standard library and does no I/O.
package region

import "fmt"

// Writer says which party owns (writes) a field. Every other party only reads it.
type Writer uint8

const (
	// GuestAML fields are written by the SSDT's tick method (\_TZ.<zone>._TMP).
	GuestAML Writer = iota + 1
	// GuestSoftware fields are written by programs in the guest through the
	// mmap-able ivshmem BAR (/sys/bus/pci/devices/*/resource2).
	GuestSoftware
	// Host fields are written by the host (hostreader.Watcher, diagread --stamp,
	// the mailbox API).
	Host
)

func (w Writer) String() string {
	switch w {
	case GuestAML:
		return "guest AML"
	case GuestSoftware:
		return "guest software"
	case Host:
		return "host"
	}
	return fmt.Sprintf("Writer(%d)", uint8(w))
}

// Field describes one 32-bit little-endian word of the region.
type Field struct {
	// Name is the Go-facing name of the field (stable; used in docs and JSON).
	Name string
	// AMLName is the 4-character ACPI name the generated Field() declares for it.
	AMLName string
	// Offset is the byte offset from the start of the region (4-byte aligned).
	Offset uint32
	// Writer owns the field.
	Writer Writer
	// Doc is a one-line description.
	Doc string
}

// Width is the width in bytes of every field (AML integers are 32-bit).
const Width = 4

// Version is the layout version this package describes.
const Version = 1

// Magic is the value of the Magic word once the guest's AML has initialised
// the header: the bytes "ADG1" in memory order.
const Magic uint32 = 'A' | 'D'<<8 | 'G'<<16 | '1'<<24

// Offsets of every field. They are the single source of truth; Fields lists
// them with their metadata in offset order.
const (
	OffMagic      = 0x00
	OffVersion    = 0x04
	OffHeaderSize = 0x08
	OffRegionSize = 0x0C
	OffSeq        = 0x10
	OffTicks      = 0x14
	OffBoots      = 0x18
	OffPeriod     = 0x1C
	OffTimerLo    = 0x20
	OffEchoLo     = 0x24
	OffEchoHi     = 0x28
	OffOSI        = 0x2C
	OffRev        = 0x30
	OffMbxAck     = 0x34
	OffMbxResult  = 0x38
	OffMbxValue   = 0x3C

	OffHostStampLo = 0x40
	OffHostStampHi = 0x44
	OffMbxCmd      = 0x48
	OffMbxArg      = 0x4C
	OffMbxSeq      = 0x50

	// OffSlots is where the application heartbeat slots start.
	OffSlots = 0x80
)

// Application heartbeat slots: NumSlots slots of SlotSize bytes from OffSlots.
// Within a slot:
//   - +0x0 Beat: a counter the application increments at each heartbeat;
//   - +0x4 PeriodMs: the heartbeat period the application promises (0 = unset);
//   - +0x8 Tag: up to 8 bytes of ASCII naming the application (NUL padded).
const (
	NumSlots     = 8
	SlotSize     = 16
	SlotBeat     = 0x0
	SlotPeriodMs = 0x4
	SlotTag      = 0x8
	SlotTagLen   = 8
)

// HeaderSize is the number of bytes the v1 layout defines (header, tick
// words, host area and slots). The AML writes it into the HeaderSize word.
const HeaderSize = OffSlots + NumSlots*SlotSize // 0x100

// MinSize is the smallest region the generator accepts.
const MinSize = 4096

// Mailbox commands (host writes MbxCmd, MbxArg, then MbxSeq; the AML answers
// at its next tick by writing MbxResult, MbxValue, then MbxAck = MbxSeq).
const (
	// CmdNone is an empty mailbox.
	CmdNone uint32 = 0
	// CmdPing asks the guest to answer; MbxValue = MbxArg.
	CmdPing uint32 = 1
	// CmdSetPeriod asks the guest to change the thermal polling period to
	// MbxArg deciseconds. The AML updates what _TZP returns and notifies the
	// zone; Linux does not re-read _TZP at runtime (PLATFORM.md), so the
	// result is ResultAccepted, not a promise that the rate changed. MbxValue
	// is the period now reported by _TZP.
	CmdSetPeriod uint32 = 2
)

// Period range, in deciseconds, that the generator accepts for the tick and
// that the AML accepts for CmdSetPeriod (anything else is ResultBadArg):
// 100 ms to 1 hour.
const (
	MinPeriod uint32 = 1
	MaxPeriod uint32 = 36000
)

// Mailbox results written by the AML into MbxResult.
const (
	ResultOK       uint32 = 1
	ResultAccepted uint32 = 2 // stored; honoured only if the OS re-reads _TZP
	ResultBadArg   uint32 = 3
	ResultUnknown  uint32 = 4 // unknown command
)

// OSI bits: which _OSI strings the guest's interpreter answered true to at
// boot, recorded by the AML in the OSI word.
var OSIStrings = [...]string{
	"Linux",        // bit 0
	"Windows 2000", // bit 1
	"Windows 2001", // bit 2 (XP)
	"Windows 2006", // bit 3 (Vista)
	"Windows 2009", // bit 4 (7)
	"Windows 2012", // bit 5 (8)
	"Windows 2013", // bit 6 (8.1)
	"Windows 2015", // bit 7 (10)
	"Darwin",       // bit 8
}

// OSIValid is set in the OSI word once the bits were computed.
const OSIValid uint32 = 1 << 31

// Fields lists every field of the v1 layout in offset order.
var Fields = []Field{
	{"magic", "MAGC", OffMagic, GuestAML, "layout magic, Magic once the AML has initialised the region"},
	{"version", "VERS", OffVersion, GuestAML, "layout version (1)"},
	{"header_size", "HSIZ", OffHeaderSize, GuestAML, "bytes defined by this layout version"},
	{"region_size", "RSIZ", OffRegionSize, GuestAML, "size of the whole region in bytes"},
	{"seq", "SEQN", OffSeq, GuestAML, "seqlock: odd while the AML updates the tick words, even when stable"},
	{"ticks", "TICK", OffTicks, GuestAML, "ticks since this boot (first tick of a boot writes 1)"},
	{"boots", "BOOT", OffBoots, GuestAML, "boot count: incremented on the first tick of every boot"},
	{"period", "PERD", OffPeriod, GuestAML, "polling period in deciseconds that _TZP reports"},
	{"timer_lo", "TMRL", OffTimerLo, GuestAML, "low 32 bits of Timer() (100 ns units) at the last tick"},
	{"echo_lo", "ECHL", OffEchoLo, GuestAML, "host stamp seen at the last tick, low word (ms since Unix epoch)"},
	{"echo_hi", "ECHH", OffEchoHi, GuestAML, "host stamp seen at the last tick, high word"},
	{"osi", "OSIB", OffOSI, GuestAML, "_OSI answers (bit i = OSIStrings[i]); bit 31 = valid"},
	{"rev", "REVN", OffRev, GuestAML, "value of _REV in the guest interpreter"},
	{"mbx_ack", "MACK", OffMbxAck, GuestAML, "sequence number of the last mailbox command answered"},
	{"mbx_result", "MRES", OffMbxResult, GuestAML, "result code of the last mailbox command"},
	{"mbx_value", "MVAL", OffMbxValue, GuestAML, "value returned by the last mailbox command"},
	{"host_stamp_lo", "HSTL", OffHostStampLo, Host, "host wall clock, ms since Unix epoch, low word"},
	{"host_stamp_hi", "HSTH", OffHostStampHi, Host, "host wall clock, high word"},
	{"mbx_cmd", "MCMD", OffMbxCmd, Host, "mailbox command (CmdPing, CmdSetPeriod)"},
	{"mbx_arg", "MARG", OffMbxArg, Host, "mailbox argument"},
	{"mbx_seq", "MSEQ", OffMbxSeq, Host, "mailbox sequence: written last; a new value posts the command"},
}

// SlotOffset returns the byte offset of application slot i, or an error if
// i is out of range.
func SlotOffset(i int) (uint32, error) {
	if i < 0 || i >= NumSlots {
		return 0, fmt.Errorf("region: slot %d out of range [0,%d)", i, NumSlots)
	}
	return OffSlots + uint32(i)*SlotSize, nil
}

// FieldByName returns the field with the given Name.
func FieldByName(name string) (Field, bool) {
	for _, f := range Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// ValidSize reports whether size is a usable region size: at least MinSize,
// a multiple of 4096, and representable in 32 bits.
func ValidSize(size uint64) error {
	switch {
	case size < MinSize:
		return fmt.Errorf("region: size %d is below the minimum %d", size, MinSize)
	case size%4096 != 0:
		return fmt.Errorf("region: size %d is not a multiple of 4096", size)
	case size > 1<<31:
		return fmt.Errorf("region: size %d is above 2 GiB", size)
	}
	return nil
}
