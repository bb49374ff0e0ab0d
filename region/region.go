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

// Field is one 32-bit little-endian word of the region, with every name it
// goes by. The exported values (Ticks, Boots, MbxSeq, ...) are the only
// identity of a field: the AML generator (package acpi) declares and writes
// them by value, the decoder (package hostreader) reads them by value, and
// nothing outside this package pairs a name with an offset by hand.
type Field struct {
	// Name is the stable snake_case name used in docs, errors and JSON
	// (a corrupt verdict's "field"; docs/cli.md documents where each word
	// is printed).
	Name string
	// GoName is the name of the hostreader.Snapshot field that holds the
	// word once decoded.
	GoName string
	// AMLName is the 4-character ACPI name the generated Field() declares for it.
	AMLName string
	// Offset is the byte offset from the start of the region (a multiple of Width).
	Offset int
	// Width is the width in bytes (always Width: AML integers are 32-bit).
	Width int
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

func field(name, goName, aml string, off int, w Writer, doc string) Field {
	return Field{Name: name, GoName: goName, AMLName: aml, Offset: off, Width: Width, Writer: w, Doc: doc}
}

// The fields of the v1 layout. MagicWord, VersionWord and HeaderSizeWord
// carry a suffix because Magic, Version and HeaderSize name the values the
// AML writes into them.
var (
	MagicWord      = field("magic", "Magic", "MAGC", 0x00, GuestAML, "layout magic, Magic once the AML has initialised the region")
	VersionWord    = field("version", "Version", "VERS", 0x04, GuestAML, "layout version (1)")
	HeaderSizeWord = field("header_size", "HeaderSize", "HSIZ", 0x08, GuestAML, "bytes defined by this layout version")
	RegionSize     = field("region_size", "RegionSize", "RSIZ", 0x0C, GuestAML, "size of the whole region in bytes")
	Seq            = field("seq", "Seq", "SEQN", 0x10, GuestAML, "seqlock: odd while the AML updates the tick words, even when stable")
	Ticks          = field("ticks", "Ticks", "TICK", 0x14, GuestAML, "ticks since this boot (first tick of a boot writes 1)")
	Boots          = field("boots", "Boots", "BOOT", 0x18, GuestAML, "boot count: incremented on the first tick of every boot")
	Period         = field("period", "Period", "PERD", 0x1C, GuestAML, "polling period in deciseconds that _TZP reports")
	TimerLo        = field("timer_lo", "TimerLo", "TMRL", 0x20, GuestAML, "low 32 bits of Timer() (100 ns units) at the last tick")
	EchoLo         = field("echo_lo", "EchoLo", "ECHL", 0x24, GuestAML, "host stamp seen at the last tick, low word (ms since Unix epoch)")
	EchoHi         = field("echo_hi", "EchoHi", "ECHH", 0x28, GuestAML, "host stamp seen at the last tick, high word")
	OSI            = field("osi", "OSI", "OSIB", 0x2C, GuestAML, "_OSI answers (bit i = OSIStrings[i]); bit 31 = valid")
	Rev            = field("rev", "Rev", "REVN", 0x30, GuestAML, "value of _REV in the guest interpreter")
	MbxAck         = field("mbx_ack", "MbxAck", "MACK", 0x34, GuestAML, "sequence number of the last mailbox command answered")
	MbxResult      = field("mbx_result", "MbxResult", "MRES", 0x38, GuestAML, "result code of the last mailbox command")
	MbxValue       = field("mbx_value", "MbxValue", "MVAL", 0x3C, GuestAML, "value returned by the last mailbox command")
	HostStampLo    = field("host_stamp_lo", "HostStampLo", "HSTL", 0x40, Host, "host wall clock, ms since Unix epoch, low word")
	HostStampHi    = field("host_stamp_hi", "HostStampHi", "HSTH", 0x44, Host, "host wall clock, high word")
	MbxCmd         = field("mbx_cmd", "MbxCmd", "MCMD", 0x48, Host, "mailbox command (CmdPing, CmdSetPeriod)")
	MbxArg         = field("mbx_arg", "MbxArg", "MARG", 0x4C, Host, "mailbox argument")
	MbxSeq         = field("mbx_seq", "MbxSeq", "MSEQ", 0x50, Host, "mailbox sequence: written last; a new value posts the command")
)

// Fields lists every field of the v1 layout in offset order.
var Fields = []Field{
	MagicWord, VersionWord, HeaderSizeWord, RegionSize, Seq, Ticks, Boots, Period, TimerLo,
	EchoLo, EchoHi, OSI, Rev, MbxAck, MbxResult, MbxValue,
	HostStampLo, HostStampHi, MbxCmd, MbxArg, MbxSeq,
}

// Pair is a 64-bit value held in two fields, low word first in memory. A
// single 32-bit store cannot update both words at once, so a writer and a
// reader of a pair that is not under the seqlock (the host stamp) agree on
// an order: the writer stores the high word, then the low word
// (WriteOrder); the reader loads the low word, then the high word
// (ReadOrder). A reader racing a writer can then only see a high word newer
// than its low word — a value too large by exactly TornExcess, never one too
// small. hostreader.Region.StampHostTime writes HostStamp in WriteOrder, the
// AML copies HostStamp into Echo in ReadOrder, and the verdict code corrects
// the excess.
type Pair struct{ Lo, Hi Field }

// The two 64-bit values of the layout, milliseconds since the Unix epoch.
var (
	// HostStamp is the host's wall clock, written by the host.
	HostStamp = Pair{HostStampLo, HostStampHi}
	// Echo is the copy of HostStamp the AML takes at each tick.
	Echo = Pair{EchoLo, EchoHi}
)

// TornExcess is how much too large a Pair read in ReadOrder can be while a
// writer stores it in WriteOrder.
const TornExcess = 1 << 32

// WriteOrder returns the pair's fields in the order a writer stores them:
// high word, then low word.
func (p Pair) WriteOrder() [2]Field { return [2]Field{p.Hi, p.Lo} }

// ReadOrder returns the pair's fields in the order a reader loads them:
// low word, then high word.
func (p Pair) ReadOrder() [2]Field { return [2]Field{p.Lo, p.Hi} }

// Split returns the words of v in WriteOrder (high word, low word).
func (p Pair) Split(v uint64) [2]uint32 { return [2]uint32{uint32(v >> 32), uint32(v)} }

// Join returns the 64-bit value of a low and a high word.
func Join(lo, hi uint32) uint64 { return uint64(hi)<<32 | uint64(lo) }

// OffSlots is where the application heartbeat slots start.
const OffSlots = 0x80

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

// SlotOffset returns the byte offset of application slot i, or an error if
// i is out of range.
func SlotOffset(i int) (int, error) {
	if i < 0 || i >= NumSlots {
		return 0, fmt.Errorf("region: slot %d out of range [0,%d)", i, NumSlots)
	}
	return OffSlots + i*SlotSize, nil
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

// FieldAt returns the field at byte offset off.
func FieldAt(off int) (Field, bool) {
	for _, f := range Fields {
		if f.Offset == off {
			return f, true
		}
	}
	return Field{}, false
}
