// Package qemuhook is everything acpidiag does with QEMU: the command-line
// arguments that wire the diagnostic channel into a VM (the SSDT, the region
// backing file, pvpanic, ACPI ERST, QMP and serial sockets), a QMP session
// with connect and per-command timeouts, typed events and reconnection, the
// on-demand diagnostics a host can run against a live or livelocked guest
// (SysRq with the console output, NMI, vCPU registers, guest memory), and a
// Supervisor that launches or attaches to a VM and merges QMP events and the
// region's health verdicts into one stream.
//
// qemuhook never parses region bytes itself: it uses package hostreader for
// that. Facts about QEMU 7.2 that shaped this package are in
// docs/PLATFORM.md; the package's own notes are in docs/qemuhook.md.
package qemuhook
