package hostreader

// UEFI Common Platform Error Record (CPER) framing, as stored in ACPI ERST
// record slots.
//
// Layouts follow Linux include/linux/cper.h (struct cper_record_header,
// struct cper_section_descriptor; "UEFI v2.7 sec N.2.1 / N.2.2"), which are
// byte-packed (#pragma pack(1)) and little-endian. The pstore-specific GUIDs
// and the way Linux fills the header come from drivers/acpi/apei/erst.c
// (erst_writer, erst_reader) and include/linux/pstore.h (CPER_CREATOR_PSTORE,
// CPER_SECTION_TYPE_DMESG, CPER_SECTION_TYPE_DMESG_Z, CPER_SECTION_TYPE_MCE).

import (
	"encoding/binary"
	"time"

	"github.com/linuxboot/fiano/pkg/guid"
)

// Sizes and offsets of the CPER structures (include/linux/cper.h).
const (
	// CPERHeaderSize is sizeof(struct cper_record_header).
	CPERHeaderSize = 128
	// CPERSectionDescriptorSize is sizeof(struct cper_section_descriptor).
	CPERSectionDescriptorSize = 72

	cperOffSignature      = 0   // char signature[4] = "CPER"
	cperOffRevision       = 4   // u16
	cperOffSignatureEnd   = 6   // u32 = 0xffffffff
	cperOffSectionCount   = 10  // u16
	cperOffErrorSeverity  = 12  // u32
	cperOffValidationBits = 16  // u32
	cperOffRecordLength   = 20  // u32
	cperOffTimestamp      = 24  // u64
	cperOffPlatformID     = 32  // guid
	cperOffPartitionID    = 48  // guid
	cperOffCreatorID      = 64  // guid
	cperOffNotification   = 80  // guid
	cperOffRecordID       = 96  // u64
	cperOffFlags          = 104 // u32
	cperOffPersistence    = 108 // u64
	cperOffReserved       = 116 // u8[12]

	secOffOffset         = 0  // u32 section_offset (from the record start)
	secOffLength         = 4  // u32 section_length
	secOffRevision       = 8  // u16
	secOffValidationBits = 10 // u8
	secOffReserved       = 11 // u8
	secOffFlags          = 12 // u32
	secOffType           = 16 // guid section_type
	secOffFRUID          = 32 // guid fru_id
	secOffSeverity       = 48 // u32 section_severity
	secOffFRUText        = 52 // u8 fru_text[20]
)

// CPERSignature is the record signature ("CPER", CPER_SIG_RECORD).
const CPERSignature = "CPER"

// CPERSignatureEnd is the value of signature_end (CPER_SIG_END).
const CPERSignatureEnd = 0xffffffff

// Validation bits of cper_record_header.validation_bits (include/linux/cper.h).
const (
	CPERValidPlatformID  = 0x1 // CPER_VALID_PLATFORM_ID
	CPERValidTimestamp   = 0x2 // CPER_VALID_TIMESTAMP
	CPERValidPartitionID = 0x4 // CPER_VALID_PARTITION_ID
)

// Severity is a CPER error severity (CPER_SEV_* in include/linux/cper.h).
type Severity uint32

// CPER severities.
const (
	SeverityRecoverable   Severity = 0 // CPER_SEV_RECOVERABLE
	SeverityFatal         Severity = 1 // CPER_SEV_FATAL
	SeverityCorrected     Severity = 2 // CPER_SEV_CORRECTED
	SeverityInformational Severity = 3 // CPER_SEV_INFORMATIONAL
)

func (s Severity) String() string {
	switch s {
	case SeverityRecoverable:
		return "recoverable"
	case SeverityFatal:
		return "fatal"
	case SeverityCorrected:
		return "corrected"
	case SeverityInformational:
		return "informational"
	}
	return "severity(" + itoa(int64(s)) + ")"
}

// GUIDs Linux uses for pstore records in ERST. They are stored in the
// mixed-endian UEFI byte order that guid.GUID holds; TestGUIDConstants checks
// them against their textual form.
var (
	// CreatorPstore is CPER_CREATOR_PSTORE (75a574e3-5052-4b29-8a8e-be2c6490b89d),
	// the creator id of every record Linux's pstore (and mce-apei) writes.
	CreatorPstore = guid.GUID{0xe3, 0x74, 0xa5, 0x75, 0x52, 0x50, 0x29, 0x4b, 0x8a, 0x8e, 0xbe, 0x2c, 0x64, 0x90, 0xb8, 0x9d}
	// SectionDmesg is CPER_SECTION_TYPE_DMESG (c197e04e-d545-4a70-9c17-a5549419eb12):
	// plain-text kernel log.
	SectionDmesg = guid.GUID{0x4e, 0xe0, 0x97, 0xc1, 0x45, 0xd5, 0x70, 0x4a, 0x9c, 0x17, 0xa5, 0x54, 0x94, 0x19, 0xeb, 0x12}
	// SectionDmesgZ is CPER_SECTION_TYPE_DMESG_Z (4f118707-04dd-4055-b5dd-956d34ddfac6):
	// compressed (raw deflate) kernel log.
	SectionDmesgZ = guid.GUID{0x07, 0x87, 0x11, 0x4f, 0xdd, 0x04, 0x55, 0x40, 0xb5, 0xdd, 0x95, 0x6d, 0x34, 0xdd, 0xfa, 0xc6}
	// SectionMCE is CPER_SECTION_TYPE_MCE (fe08ffbe-95e4-4be7-bc73-4096044a38fc):
	// a machine-check record.
	SectionMCE = guid.GUID{0xbe, 0xff, 0x08, 0xfe, 0xe4, 0x95, 0xe7, 0x4b, 0xbc, 0x73, 0x40, 0x96, 0x04, 0x4a, 0x38, 0xfc}
	// NotifyMCE is CPER_NOTIFY_MCE (e8f56ffe-919c-4cc5-ba88-65abe14913bb), the
	// notification type erst_writer puts in pstore records.
	NotifyMCE = guid.GUID{0xfe, 0x6f, 0xf5, 0xe8, 0x9c, 0x91, 0xc5, 0x4c, 0xba, 0x88, 0x65, 0xab, 0xe1, 0x49, 0x13, 0xbb}
)

// CPERHeader is struct cper_record_header (128 bytes).
type CPERHeader struct {
	Revision       uint16
	SignatureEnd   uint32
	SectionCount   uint16
	ErrorSeverity  Severity
	ValidationBits uint32
	RecordLength   uint32
	// RawTimestamp is the timestamp field as stored. Linux's erst_writer
	// stores plain seconds since the Unix epoch (ktime_get_real_seconds());
	// firmware writes the UEFI packed-BCD form. See Record.Timestamp.
	RawTimestamp     uint64
	PlatformID       guid.GUID
	PartitionID      guid.GUID
	CreatorID        guid.GUID
	NotificationType guid.GUID
	RecordID         uint64
	Flags            uint32
	// PersistenceInfo is persistence_information (Linux leaves it 0; QEMU's
	// store shows "ER" here in practice).
	PersistenceInfo uint64
}

// CPERSection is struct cper_section_descriptor (72 bytes).
type CPERSection struct {
	// Offset of the section body from the start of the record.
	Offset uint32
	// Length of the section body in bytes.
	Length         uint32
	Revision       uint16
	ValidationBits uint8
	Flags          uint32
	Type           guid.GUID
	FRUID          guid.GUID
	Severity       Severity
	// FRUText is fru_text with trailing NULs removed (not escaped).
	FRUText string
}

func getGUID(b []byte) guid.GUID {
	var g guid.GUID
	copy(g[:], b[:guid.Size])
	return g
}

// decodeCPERHeader decodes the fixed header of a CPER record. rec holds the
// bytes available for the record (at least CPERHeaderSize); base is the file
// offset of rec[0], used in errors.
func decodeCPERHeader(rec []byte, base int64) (CPERHeader, *fieldError) {
	var h CPERHeader
	if len(rec) < CPERHeaderSize {
		return h, &fieldError{off: base, field: "cper header", msg: "only " + itoa(int64(len(rec))) + " bytes, need " + itoa(CPERHeaderSize)}
	}
	le := binary.LittleEndian
	if string(rec[cperOffSignature:cperOffSignature+4]) != CPERSignature {
		return h, &fieldError{off: base + cperOffSignature, field: "cper signature", msg: "got " + quoteBytes(rec[:4]) + ", want \"CPER\""}
	}
	h.Revision = le.Uint16(rec[cperOffRevision:])
	h.SignatureEnd = le.Uint32(rec[cperOffSignatureEnd:])
	if h.SignatureEnd != CPERSignatureEnd {
		return h, &fieldError{off: base + cperOffSignatureEnd, field: "cper signature_end", msg: "got " + hex32(h.SignatureEnd) + ", want 0xffffffff"}
	}
	h.SectionCount = le.Uint16(rec[cperOffSectionCount:])
	h.ErrorSeverity = Severity(le.Uint32(rec[cperOffErrorSeverity:]))
	h.ValidationBits = le.Uint32(rec[cperOffValidationBits:])
	h.RecordLength = le.Uint32(rec[cperOffRecordLength:])
	h.RawTimestamp = le.Uint64(rec[cperOffTimestamp:])
	h.PlatformID = getGUID(rec[cperOffPlatformID:])
	h.PartitionID = getGUID(rec[cperOffPartitionID:])
	h.CreatorID = getGUID(rec[cperOffCreatorID:])
	h.NotificationType = getGUID(rec[cperOffNotification:])
	h.RecordID = le.Uint64(rec[cperOffRecordID:])
	h.Flags = le.Uint32(rec[cperOffFlags:])
	h.PersistenceInfo = le.Uint64(rec[cperOffPersistence:])
	return h, nil
}

// decodeCPERSection decodes one section descriptor at rec[off:] and checks
// that the section body lies inside the record (recLen bytes).
func decodeCPERSection(rec []byte, off int, recLen uint32, base int64) (CPERSection, *fieldError) {
	var s CPERSection
	le := binary.LittleEndian
	d := rec[off : off+CPERSectionDescriptorSize]
	s.Offset = le.Uint32(d[secOffOffset:])
	s.Length = le.Uint32(d[secOffLength:])
	s.Revision = le.Uint16(d[secOffRevision:])
	s.ValidationBits = d[secOffValidationBits]
	s.Flags = le.Uint32(d[secOffFlags:])
	s.Type = getGUID(d[secOffType:])
	s.FRUID = getGUID(d[secOffFRUID:])
	s.Severity = Severity(le.Uint32(d[secOffSeverity:]))
	fru := d[secOffFRUText : secOffFRUText+20]
	n := len(fru)
	for n > 0 && fru[n-1] == 0 {
		n--
	}
	s.FRUText = string(fru[:n])
	doff := base + int64(off)
	if s.Offset < CPERHeaderSize || s.Offset > recLen {
		return s, &fieldError{off: doff + secOffOffset, field: "section_offset",
			msg: itoa(int64(s.Offset)) + " is outside the record body [" + itoa(CPERHeaderSize) + ", " + itoa(int64(recLen)) + "]"}
	}
	if uint64(s.Offset)+uint64(s.Length) > uint64(recLen) {
		return s, &fieldError{off: doff + secOffLength, field: "section_length",
			msg: "section [" + itoa(int64(s.Offset)) + ", +" + itoa(int64(s.Length)) + ") runs past record_length " + itoa(int64(recLen))}
	}
	return s, nil
}

// cperTimestamp interprets a CPER timestamp. Linux pstore records (creator
// CPER_CREATOR_PSTORE) carry plain Unix seconds (erst_writer:
// rcd->hdr.timestamp = ktime_get_real_seconds(); erst_reader reads it back
// the same way). Other creators use the UEFI layout (UEFI spec N.2.1, Linux
// drivers/firmware/efi/cper.c cper_print_tstamp): byte 0 seconds, 1 minutes,
// 2 hours, 3 flags (bit 0: precise), 4 day, 5 month, 6 year, 7 century, each
// in BCD. The zero time is returned when the timestamp is not valid.
func cperTimestamp(h *CPERHeader) time.Time {
	if h.ValidationBits&CPERValidTimestamp == 0 {
		return time.Time{}
	}
	if h.CreatorID == CreatorPstore {
		if h.RawTimestamp == 0 || h.RawTimestamp > 1<<40 {
			return time.Time{}
		}
		return time.Unix(int64(h.RawTimestamp), 0).UTC()
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], h.RawTimestamp)
	var v [8]int
	for i, x := range b {
		if i == 3 { // flags, not BCD
			continue
		}
		hi, lo := int(x>>4), int(x&0xf)
		if hi > 9 || lo > 9 {
			return time.Time{}
		}
		v[i] = hi*10 + lo
	}
	sec, min, hour, day, mon := v[0], v[1], v[2], v[4], v[5]
	year := v[7]*100 + v[6]
	if sec > 59 || min > 59 || hour > 23 || day < 1 || day > 31 || mon < 1 || mon > 12 {
		return time.Time{}
	}
	return time.Date(year, time.Month(mon), day, hour, min, sec, 0, time.UTC)
}
