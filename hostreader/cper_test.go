package hostreader

import (
	"testing"
	"time"

	"github.com/linuxboot/fiano/pkg/guid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGUIDConstants checks the byte-literal GUIDs against their textual form
// as written in Linux (include/linux/pstore.h, include/linux/cper.h).
func TestGUIDConstants(t *testing.T) {
	for text, g := range map[string]guid.GUID{
		"75a574e3-5052-4b29-8a8e-be2c6490b89d": CreatorPstore,
		"c197e04e-d545-4a70-9c17-a5549419eb12": SectionDmesg,
		"4f118707-04dd-4055-b5dd-956d34ddfac6": SectionDmesgZ,
		"fe08ffbe-95e4-4be7-bc73-4096044a38fc": SectionMCE,
		"e8f56ffe-919c-4cc5-ba88-65abe14913bb": NotifyMCE,
	} {
		p, err := guid.Parse(text)
		require.NoError(t, err)
		assert.Equal(t, *p, g, text)
	}
}

func TestCPERTimestamp(t *testing.T) {
	h := CPERHeader{ValidationBits: CPERValidTimestamp, CreatorID: CreatorPstore, RawTimestamp: 1795318650}
	assert.Equal(t, time.Unix(1795318650, 0).UTC(), cperTimestamp(&h))
	h.ValidationBits = 0
	assert.True(t, cperTimestamp(&h).IsZero())

	// UEFI BCD: 2026-11-22 04:35:59, precise flag set.
	h = CPERHeader{ValidationBits: CPERValidTimestamp, RawTimestamp: 0x20_26_11_22_01_04_35_59}
	assert.Equal(t, time.Date(2026, 11, 22, 4, 35, 59, 0, time.UTC), cperTimestamp(&h))
	for _, bad := range []uint64{
		0x20_26_11_22_01_04_35_5a, // not BCD
		0x20_26_13_22_00_04_35_59, // month 13
		0x20_26_11_00_00_04_35_59, // day 0
		0x20_26_11_22_00_24_35_59, // hour 24
	} {
		h.RawTimestamp = bad
		assert.True(t, cperTimestamp(&h).IsZero(), "%#x", bad)
	}
}

func TestSeverityString(t *testing.T) {
	assert.Equal(t, "fatal", SeverityFatal.String())
	assert.Equal(t, "corrected", SeverityCorrected.String())
	assert.Equal(t, "severity(9)", Severity(9).String())
}

func TestCPERHeaderFromFixture(t *testing.T) {
	b := readCase(t, "q35_sysrq_none")
	h, fe := decodeCPERHeader(b[fixRS:2*fixRS], fixRS)
	require.Nil(t, fe)
	assert.Equal(t, uint16(0x0100), h.Revision)
	assert.Equal(t, uint16(1), h.SectionCount)
	assert.Equal(t, CreatorPstore, h.CreatorID)
	assert.Equal(t, NotifyMCE, h.NotificationType)
	assert.Equal(t, uint32(CPERValidTimestamp), h.ValidationBits)
	sec, fe := decodeCPERSection(b[fixRS:2*fixRS], CPERHeaderSize, h.RecordLength, fixRS)
	require.Nil(t, fe)
	assert.Equal(t, uint32(CPERHeaderSize+CPERSectionDescriptorSize), sec.Offset)
	assert.Equal(t, h.RecordLength, sec.Offset+sec.Length)
	assert.Equal(t, SectionDmesg, sec.Type)
	assert.Equal(t, uint32(1), sec.Flags) // CPER_SEC_PRIMARY
	assert.Equal(t, SeverityFatal, sec.Severity)
}
