// Package hostreader is the host side of acpidiag: it reads what the guest
// left in shared memory and in the ACPI ERST store, and never trusts a byte
// of it.
//
// # Region verdicts
//
// A diagnostic region (layout: package region, v1) is read from a mapped
// backing file (OpenRegion: ivshmem-plain's memory-backend-file, or the
// fixed-address placement in file-backed guest RAM via OpenOptions.Offset),
// from a memory dump (RegionFromDump) or from any byte slice
// (RegionFromBytes, e.g. QMP pmemsave output). A Region never reads past its
// source (a file shorter than the header or than its own RegionSize word is
// refused with a *RegionError; a file truncated after mapping gives ErrFault,
// not a crash) and only ever touches the v1 words.
//
// Region.Snapshot reads the words under the guest's seqlock (even Seq before
// and after, bounded retries, Torn otherwise) into a fixed-size Snapshot
// value; Assess (one snapshot) and Tracker (successive snapshots) turn it
// into a Verdict: absent, alive, stale, rebooted, panicked, corrupt, torn or
// unknown, with its evidence (ticks, boots, period, last tick in host time,
// age, timer, application slots, panic evidence). Freshness comes from the
// echo of the host stamp when the host keeps stamping (one snapshot), or
// from the tick words moving over host time (two snapshots); Check does
// whichever is needed, and also waits (within its bound) until every
// application slot that promises a period is judged alive or stale. Each
// word is read by its typed field (Snapshot.Word(region.Ticks)). The host
// writes its clock (StampHostTime, in region.HostStamp.WriteOrder: high
// word then low word) and mailbox commands (Post, Answer; Ping for a whole
// round trip with the verdict that explains a missing answer) into the
// host-owned words only.
//
// Watcher follows many regions at once, stamps them, and emits verdict
// changes on a channel; panic evidence from the supervisor (pvpanic, ERST)
// is injected with Watcher.ReportPanic.
//
// # ERST panic logs
//
// DecodeERST and ReadERSTFile decode a QEMU acpi-erst backing file: the
// storage header, the slot map, and every record's UEFI CPER header and
// section, including pstore dmesg text (plain or deflate-compressed), with
// a *RecordError per bad record instead of failing the whole store.
//
// Threat model: the guest owns those bytes. Every length and index is
// bounded, no allocation is sized by guest data, and guest strings are
// escaped before they are printed.
package hostreader
