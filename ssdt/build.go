package ssdt

import (
	"fmt"
	"sort"

	"github.com/acpidiag/acpidiag/acpi"
	"github.com/acpidiag/acpidiag/aml"
	"github.com/acpidiag/acpidiag/region"
)

// Names the generated SSDT declares besides the zone, the device and the
// region fields. They are checked against user-chosen names in Validate.
const (
	nameFirst     = "DGFT" // zone: 0 until the first tick of this boot ran
	nameOSI       = "DGOS" // zone: OSI word computed by _INI, 0 if _INI never ran
	namePeriod    = "DGPV" // zone: period _TZP reports, deciseconds
	nameBase      = "DGBA" // zone: validated ivshmem BAR2 base, noBase = none
	namePCIRegion = "DGPC" // device: PCI config space region
	nameMemRegion = "DGMR" // region in SystemMemory
	namePCIIDs    = "PVID" // device: vendor|device<<16 (config 0x00)
	namePCICmd    = "PCMD" // device: command register (config 0x04, 16 bits)
	namePCIBAR2   = "BAR2" // device: BAR2 (config 0x18)
	namePCIBAR3   = "BAR3" // device: BAR3 (config 0x1C), high half of a 64-bit BAR2
)

// SafeTemperature is what _TMP always returns, in tenths of a kelvin
// (26.85 °C): far below CriticalTemperature, so the guest never acts on it.
const SafeTemperature = 3000

// CriticalTemperature is the _CRT trip point (100 °C). Linux 6.1 needs one
// valid trip point or it never polls the zone.
const CriticalTemperature = 3732

// IvshmemIDs is the PCI vendor:device id word of ivshmem (1af4:1110) as
// read from config offset 0 (vendor in the low half).
const IvshmemIDs = 0x1110<<16 | 0x1af4

// SSDT header values Build writes besides the configured OEM ids.
const (
	SSDTRevision    = 2
	OEMRevision     = 1
	CreatorID       = "ADGN"
	CreatorRevision = region.Version
)

// noBase is DGBA's value while no validated base is cached: never equal to
// a masked BAR2 (low 4 bits clear), so the cheap re-validation cannot match it.
const noBase = 1

// pciMemDecode is the Memory Space enable bit of the PCI command register.
const pciMemDecode = 0x2

// Build validates c and returns the whole diagnostic SSDT: header and AML
// body, checksummed, ready for QEMU's -acpitable file=. See docs/ssdt.md for
// what the AML does.
func Build(c Config) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	body, err := aml.AppendEncode(make([]byte, 0, 1280), Terms(c)...)
	if err != nil {
		return nil, fmt.Errorf("ssdt: encoding the diagnostic SSDT: %w", err)
	}
	h := acpi.Header{
		Signature:       "SSDT",
		Revision:        SSDTRevision,
		OEMID:           c.OEMID,
		OEMTableID:      c.TableID,
		OEMRevision:     OEMRevision,
		CreatorID:       CreatorID,
		CreatorRevision: CreatorRevision,
	}
	return acpi.Marshal(h, body)
}

// Terms returns the AML terms of the diagnostic SSDT's body for c (which
// Build validates first; Terms does not). Exposed so that callers can embed
// the zone in a table of their own.
func Terms(c Config) []aml.Term {
	var terms []aml.Term
	zone := []aml.Term{
		aml.Name(nameFirst, aml.Zero),
		aml.Name(nameOSI, aml.Zero),
		aml.Name(namePeriod, aml.Int(uint64(c.Tick.Milliseconds()/100))),
	}
	if c.Placement == PlaceIvshmem {
		terms = append(terms,
			// iasl's encoding: ACPICA's loader mishandles a bare External
			// (it tries to create \_SB.PCI0 again), If (Zero) hides it from
			// the interpreter while disassemblers still see it.
			aml.If(aml.Zero, aml.External(`\_SB.PCI0`, aml.DeviceObj, 0)),
			aml.Scope(`\_SB.PCI0`, aml.Device(c.DeviceName,
				aml.Name("_ADR", aml.Int(uint64(c.Slot)<<16)),
				aml.OperationRegion(namePCIRegion, aml.PCIConfig, aml.Zero, aml.Int(0x20)),
				aml.Field(namePCIRegion, aml.DWordAcc, aml.NoLock, aml.Preserve,
					aml.FieldUnit(namePCIIDs, 32),
					aml.Offset(0x18),
					aml.FieldUnit(namePCIBAR2, 32),
					aml.FieldUnit(namePCIBAR3, 32),
				),
				// The command register gets 16-bit accesses of its own, so
				// that setting a bit never rewrites the status register's
				// write-1-to-clear bits at 0x06. (AnyAcc would do this too,
				// but ACPICA then reads the 32-bit units byte by byte.)
				aml.Field(namePCIRegion, aml.WordAcc, aml.NoLock, aml.Preserve,
					aml.Offset(0x04),
					aml.FieldUnit(namePCICmd, 16),
				),
			)),
		)
		zone = append(zone, aml.Name(nameBase, aml.Int(noBase)))
	} else {
		zone = append(zone,
			aml.OperationRegion(nameMemRegion, aml.SystemMemory, aml.Int(c.Address), aml.Int(c.Size)),
			regionField())
	}
	zone = append(zone,
		aml.Method("_INI", 0, aml.NotSerialized, iniBody()...),
		aml.Method("_TZP", 0, aml.NotSerialized, aml.Return(n(namePeriod))),
		aml.Method("_CRT", 0, aml.NotSerialized, aml.Return(aml.Int(CriticalTemperature))),
		aml.Method("_TMP", 0, aml.Serialized, tickBody(c)...),
	)
	terms = append(terms, aml.Scope(`\_TZ`, aml.ThermalZone(c.ZoneName, zone...)))
	return terms
}

func n(s string) aml.Term { return aml.NameString(s) }

// w returns the AML name term of a region field.
func w(f region.Field) aml.Term { return aml.NameString(f.AMLName) }

// regionFieldElems is the Field list declaring every field of region.Fields
// in offset order; built once and never modified.
var regionFieldElems = func() []aml.FieldElement {
	fs := append([]region.Field(nil), region.Fields...)
	sort.Slice(fs, func(i, j int) bool { return fs[i].Offset < fs[j].Offset })
	var elems []aml.FieldElement
	at := 0
	for _, f := range fs {
		if f.Offset != at {
			elems = append(elems, aml.Offset(f.Offset))
		}
		elems = append(elems, aml.FieldUnit(f.AMLName, 8*f.Width))
		at = f.Offset + f.Width
	}
	return elems
}()

// regionField declares every field of region.Fields over nameMemRegion.
func regionField() aml.Term {
	return aml.Field(nameMemRegion, aml.DWordAcc, aml.NoLock, aml.Preserve, regionFieldElems...)
}

// iniBody is the body of the zone's _INI: it asks _OSI for each string of
// region.OSIStrings once, at namespace initialisation, and keeps the bits
// (+ region.OSIValid) in DGOS for the first tick to copy. Doing this in the
// tick cost 54 of the first tick's AML terms (acpiexec trace). ACPICA runs
// _INI of ThermalZone objects as of Devices (nsinit.c); an OS that does not
// leaves DGOS at 0, so the first tick writes an OSI word without the valid
// bit: unknown, never wrong.
func iniBody() []aml.Term {
	osi := aml.Local(0)
	body := []aml.Term{aml.Store(aml.Int(uint64(region.OSIValid)), osi)}
	for i, s := range region.OSIStrings {
		body = append(body, aml.If(aml.Call("_OSI", aml.Str(s)), aml.Or(osi, aml.Int(1<<i), osi)))
	}
	return append(body, aml.Store(osi, n(nameOSI)))
}

// tickBody is the body of _TMP. Comments give the ASL.
func tickBody(c Config) []aml.Term {
	var body []aml.Term
	if c.Placement == PlaceIvshmem {
		dev := `\_SB.PCI0.` + c.DeviceName + `.`
		bar2, bar3, ids, cmd := n(dev+namePCIBAR2), n(dev+namePCIBAR3), n(dev+namePCIIDs), n(dev+namePCICmd)
		// Local0 < baseLimit <=> Local0 <= 2^32 - Size (fits 32 bits: Size >= 4096).
		baseLimit := uint64(1)<<32 - c.Size + 1
		body = append(body,
			// Local0 = BAR2 & 0xFFFFFFF0
			aml.And(bar2, aml.Int(0xFFFFFFF0), aml.Local(0)),
			// Cheap re-validation, one test: If ((Local0 ^ DGBA) | BAR3),
			// i.e. unless the cached base still matches BAR2 and BAR3 is
			// still 0, validate from scratch.
			aml.If(aml.Or(aml.Xor(aml.Local(0), n(nameBase), nil), bar3, nil),
				// If (PVID == ids && !BAR3 && Local0 && Local0 < limit)
				aml.If(aml.LAnd(
					aml.LAnd(aml.LEqual(ids, aml.Int(IvshmemIDs)), aml.LNot(bar3)),
					aml.LAnd(aml.Local(0), aml.LLess(aml.Local(0), aml.Int(baseLimit)))),
					// Memory decode on (a no-op write when it already is).
					aml.Or(cmd, aml.Int(pciMemDecode), cmd),
					aml.Store(aml.Local(0), n(nameBase)),
				).Else(
					aml.Store(aml.Int(noBase), n(nameBase)),
					aml.Return(aml.Int(SafeTemperature)),
				),
			),
			aml.OperationRegion(nameMemRegion, aml.SystemMemory, n(nameBase), aml.Int(c.Size)),
			regionField(),
		)
	}
	first := []aml.Term{
		aml.Store(aml.One, n(nameFirst)),
		aml.Store(aml.Int(uint64(region.Magic)), w(region.MagicWord)),
		aml.Store(aml.Int(region.Version), w(region.VersionWord)),
		aml.Store(aml.Int(region.HeaderSize), w(region.HeaderSizeWord)),
		aml.Store(aml.Int(c.Size), w(region.RegionSize)),
		aml.Increment(w(region.Boots)),
		aml.Store(aml.Zero, w(region.Ticks)),
		aml.Store(n(nameOSI), w(region.OSI)),
		aml.Store(n("_REV"), w(region.Rev)),
	}
	seq := aml.Local(1)
	arg := aml.Local(5)
	// Set-period's range check in one unsigned comparison:
	// MinPeriod <= arg <= MaxPeriod  <=>  arg - MinPeriod < MaxPeriod - MinPeriod + 1
	// (arg < MinPeriod wraps around to a huge value, in 32- and 64-bit AML).
	inRange := aml.LLess(aml.Subtract(arg, aml.Int(uint64(region.MinPeriod)), nil),
		aml.Int(uint64(region.MaxPeriod-region.MinPeriod+1)))
	mailbox := []aml.Term{
		aml.Store(w(region.MbxSeq), aml.Local(3)),
		aml.If(aml.LNotEqual(aml.Local(3), w(region.MbxAck)),
			aml.Store(w(region.MbxCmd), aml.Local(4)),
			// Set-period first: it is the longer branch, so the worst
			// mailbox tick stays short.
			aml.If(aml.LEqual(aml.Local(4), aml.Int(uint64(region.CmdSetPeriod))),
				aml.Store(w(region.MbxArg), arg),
				aml.If(inRange,
					aml.Store(arg, n(namePeriod)),
					aml.Notify(n(c.ZoneName), aml.Int(0x81)),
					aml.Store(aml.Int(uint64(region.ResultAccepted)), w(region.MbxResult)),
				).Else(
					aml.Store(aml.Int(uint64(region.ResultBadArg)), w(region.MbxResult)),
				),
				aml.Store(n(namePeriod), w(region.MbxValue)),
			).Else(aml.If(aml.LEqual(aml.Local(4), aml.Int(uint64(region.CmdPing))),
				aml.Store(aml.Int(uint64(region.ResultOK)), w(region.MbxResult)),
				aml.Store(w(region.MbxArg), w(region.MbxValue)),
			).Else(
				aml.Store(aml.Int(uint64(region.ResultUnknown)), w(region.MbxResult)),
				aml.Store(aml.Zero, w(region.MbxValue)),
			)),
			aml.Store(aml.Local(3), w(region.MbxAck)),
		),
	}
	body = append(body,
		// seqlock: Local1 = SEQN | 1 (odd); SEQN = Local1
		aml.Or(w(region.Seq), aml.One, seq),
		aml.Store(seq, w(region.Seq)),
		// The first tick of a boot initialises the header and leaves the
		// mailbox to the next tick: so that no tick pays for both.
		aml.If(n(nameFirst), mailbox...).Else(first...),
		aml.Increment(w(region.Ticks)),
		aml.Store(n(namePeriod), w(region.Period)),
		aml.Store(aml.Timer(), w(region.TimerLo)),
	)
	body = append(body, copyPair(region.HostStamp, region.Echo)...)
	return append(body,
		// SEQN = Local1 + 1 (even)
		aml.Add(seq, aml.One, w(region.Seq)),
		aml.Return(aml.Int(SafeTemperature)),
	)
}

// copyPair copies the 64-bit value src into dst one word at a time, in
// region's ReadOrder (low word, then high word): the order the host's
// WriteOrder is safe against (see region.Pair).
func copyPair(src, dst region.Pair) []aml.Term {
	s, d := src.ReadOrder(), dst.ReadOrder()
	return []aml.Term{aml.Store(w(s[0]), w(d[0])), aml.Store(w(s[1]), w(d[1]))}
}
