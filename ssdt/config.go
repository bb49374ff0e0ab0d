// Package ssdt builds the diagnostic SSDT (Config → table bytes): the
// ThermalZone whose _TMP writes the heartbeat into the region (see
// docs/ssdt.md). Generic table framing (header, checksum, parsing) lives
// in package acpi; errors here are a *ConfigError naming the Config
// field.
package ssdt

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/acpidiag/acpidiag/acpi"
	"github.com/acpidiag/acpidiag/region"
)

// Placement says where the diagnostic region lives in the guest (see
// region.Placement, where the placement rules live).
type Placement = region.Placement

const (
	// PlaceIvshmem puts the region in BAR2 of an ivshmem-plain PCI device on
	// the root bus; the AML finds the BAR at run time. It needs nothing in the
	// guest and is the default.
	PlaceIvshmem = region.Ivshmem
	// PlaceFixed puts the region at a fixed guest-physical address in low
	// RAM (file-backed guest RAM the guest kernel leaves alone, e.g. with
	// memmap=SIZE$ADDR).
	PlaceFixed = region.Fixed
)

// Defaults used by DefaultConfig.
const (
	DefaultSlot       = region.DefaultSlot
	DefaultSize       = region.DefaultSize
	DefaultTick       = time.Second
	DefaultOEMID      = "ACPIDG"
	DefaultTableID    = "DIAGSSDT"
	DefaultZoneName   = "DIAG"
	DefaultDeviceName = "DGIV"
)

// Tick range the generator accepts (the same range, in deciseconds, as
// region.MinPeriod..region.MaxPeriod).
const (
	MinTick = time.Duration(region.MinPeriod) * 100 * time.Millisecond
	MaxTick = time.Duration(region.MaxPeriod) * 100 * time.Millisecond
)

// Config describes the diagnostic SSDT to generate. The zero value is not
// valid; start from DefaultConfig.
type Config struct {
	// Placement selects ivshmem (default) or a fixed address.
	Placement Placement
	// Slot is the PCI slot (device number, 1..31) of the ivshmem-plain
	// device on the root bus (ivshmem placement only).
	Slot uint8
	// Address is the guest-physical address of the region (fixed placement
	// only): page aligned, in low RAM (see region.Spec).
	Address uint64
	// Size is the region size in bytes: at least region.MinSize, a multiple
	// of 4096, a power of two for ivshmem (it must equal the memory
	// backend's size).
	Size uint64
	// Tick is the polling period reported by _TZP; deciseconds granularity,
	// MinTick..MaxTick.
	Tick time.Duration
	// OEMID (1..6 printable ASCII) and TableID (1..8) go in the table header.
	OEMID, TableID string
	// ZoneName is the ThermalZone's name under \_TZ, DeviceName the ivshmem
	// Device's name under \_SB.PCI0: 4 characters [A-Z0-9_], first not a
	// digit nor '_', not a name QEMU's tables define.
	ZoneName, DeviceName string
}

// DefaultConfig returns the default configuration: ivshmem at slot 0x10,
// 64 KiB, a 1 s tick.
func DefaultConfig() Config {
	return Config{
		Placement:  PlaceIvshmem,
		Slot:       DefaultSlot,
		Size:       DefaultSize,
		Tick:       DefaultTick,
		OEMID:      DefaultOEMID,
		TableID:    DefaultTableID,
		ZoneName:   DefaultZoneName,
		DeviceName: DefaultDeviceName,
	}
}

// ConfigError reports an invalid Config field: which field, its value, and
// what to change.
type ConfigError struct {
	Field string // Config field name, e.g. "Size"
	Value string // the offending value, formatted
	Msg   string // what is wrong and what to do
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("ssdt: config %s=%s: %s", e.Field, e.Value, e.Msg)
}

// ErrConfig is matched by errors.Is for every *ConfigError.
var ErrConfig = errors.New("invalid SSDT configuration")

// Is makes errors.Is(err, ErrConfig) true for a *ConfigError.
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

func cfgErr(field string, v any, format string, args ...any) error {
	var val string
	switch x := v.(type) {
	case string:
		val = strconv.Quote(x)
	case uint64:
		val = fmt.Sprintf("%#x", x)
	default:
		val = fmt.Sprint(x)
	}
	return &ConfigError{Field: field, Value: val, Msg: fmt.Sprintf(format, args...)}
}

// internalNames are the ACPI names the generated SSDT declares besides the
// zone, the device and the region fields (see ssdt.go).
var internalNames = []string{nameFirst, nameOSI, namePeriod, nameBase, namePCIRegion, nameMemRegion,
	namePCIIDs, namePCICmd, namePCIBAR2, namePCIBAR3}

// qemuPCI0Names are the names QEMU 7.2's pc and q35 tables define directly
// under \_SB.PCI0 (collected from every DSDT/SSDT in the shared fixtures,
// see TestQEMUNamesCovered). QEMU also names a device per slot S<devfn>_
// (two hex digits), refused by pattern.
var qemuPCI0Names = []string{"AIDX", "B0EJ", "BLCK", "BNMR", "BNUM", "BSEL", "DVNT", "FWCF",
	"GPE0", "MHPD", "PCEJ", "PCID", "PCIU", "PCNT", "PCST", "PDSM", "PHPR", "PIDX", "PRES",
	"PRTA", "PRTP", "SEJ_"}

func isQEMUSlotName(n string) bool {
	return len(n) == 4 && n[0] == 'S' && isHex(n[1]) && isHex(n[2]) && n[3] == '_'
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

func checkName(field, n string) error {
	if len(n) != 4 {
		return cfgErr(field, n, "an ACPI name must be exactly 4 characters (pad with '_')")
	}
	for i := 0; i < 4; i++ {
		c := n[i]
		ok := c >= 'A' && c <= 'Z' || c == '_' || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			return cfgErr(field, n, "character %d (%q) not allowed: use A-Z, 0-9 (not first) or '_'", i, c)
		}
	}
	if n[0] == '_' {
		return cfgErr(field, n, "names starting with '_' are reserved by the ACPI spec; pick another")
	}
	for _, f := range region.Fields {
		if f.AMLName == n {
			return cfgErr(field, n, "clashes with the region field %s; pick another", f.Name)
		}
	}
	for _, in := range internalNames {
		if in == n {
			return cfgErr(field, n, "clashes with a name the SSDT declares internally; pick another")
		}
	}
	return nil
}

// Spec returns the region placement and size of c.
func (c Config) Spec() region.Spec {
	return region.Spec{Placement: c.Placement, Slot: c.Slot, Address: c.Address, Size: c.Size}
}

// Validate checks every field and returns a *ConfigError for the first
// problem found, saying what to change. The placement and size follow
// region's rules (region.Spec.Validate); the machine-dependent ones
// (region.Spec.ValidateOn) are checked where the machine is known: by
// qemuhook and the command lines.
func (c Config) Validate() error {
	if err := c.Spec().Validate(); err != nil {
		var pe *region.PlacementError
		if errors.As(err, &pe) {
			return &ConfigError{Field: pe.Field, Value: pe.Value, Msg: pe.Msg}
		}
		return err
	}
	if c.Tick < MinTick || c.Tick > MaxTick {
		return cfgErr("Tick", c.Tick, "must be between %v and %v", MinTick, MaxTick)
	}
	if c.Tick%(100*time.Millisecond) != 0 {
		return cfgErr("Tick", c.Tick, "_TZP has deciseconds granularity: use a multiple of 100ms")
	}
	if c.OEMID == "" {
		return cfgErr("OEMID", c.OEMID, "0 characters, want at most 6")
	}
	if c.TableID == "" {
		return cfgErr("TableID", c.TableID, "0 characters, want at most 8")
	}
	// The header rules are acpi's (Marshal); its *FormatError names the
	// header field, mapped here to the Config field.
	h := acpi.Header{Signature: "SSDT", OEMID: c.OEMID, OEMTableID: c.TableID, CreatorID: CreatorID}
	if err := h.Check(); err != nil {
		var fe *acpi.FormatError
		if errors.As(err, &fe) && fe.Field == "OEMTableID" {
			return cfgErr("TableID", c.TableID, "%s", fe.Msg)
		}
		if errors.As(err, &fe) && fe.Field == "OEMID" {
			return cfgErr("OEMID", c.OEMID, "%s", fe.Msg)
		}
		return fmt.Errorf("ssdt: table header: %w", err)
	}
	if err := checkName("ZoneName", c.ZoneName); err != nil {
		return err
	}
	if c.Placement == PlaceIvshmem {
		if err := checkName("DeviceName", c.DeviceName); err != nil {
			return err
		}
		if c.DeviceName == c.ZoneName {
			return cfgErr("DeviceName", c.DeviceName, "must differ from ZoneName")
		}
		if isQEMUSlotName(c.DeviceName) {
			return cfgErr("DeviceName", c.DeviceName, "QEMU names its PCI slot devices S<devfn>_; pick another")
		}
		for _, q := range qemuPCI0Names {
			if q == c.DeviceName {
				return cfgErr("DeviceName", c.DeviceName, "QEMU already defines \\_SB.PCI0.%s; pick another", q)
			}
		}
	}
	return nil
}
