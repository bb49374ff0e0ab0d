package acpi

// Names the generated SSDT declares besides the zone, the device and the
// region fields. They are checked against user-chosen names in Validate.
const (
	nameFirst     = "DGFT" // zone: 0 until the first tick of this boot ran
	namePeriod    = "DGPV" // zone: period _TZP reports, deciseconds
	nameBase      = "DGBA" // zone: validated ivshmem BAR2 base, 0 = none
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
