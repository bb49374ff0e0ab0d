package region_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/region"
)

// The layout's invariants: every field a Width-wide word at an aligned,
// unique offset inside the header and before the slots; names, Go names and
// AML names unique; AML names valid 4-character ACPI names; Fields in
// offset order; the pairs made of adjacent low/high words.
func TestLayoutInvariants(t *testing.T) {
	offsets, names, goNames, amlNames := map[int]string{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	prev := -1
	for _, f := range region.Fields {
		assert.Equal(t, region.Width, f.Width, "%s: width", f.Name)
		assert.Zero(t, f.Offset%region.Width, "%s: offset %#x not aligned", f.Name, f.Offset)
		assert.GreaterOrEqual(t, f.Offset, 0, f.Name)
		assert.LessOrEqual(t, f.Offset+f.Width, region.OffSlots, "%s: overlaps the slots", f.Name)
		assert.LessOrEqual(t, f.Offset+f.Width, region.HeaderSize, "%s: outside the header", f.Name)
		assert.Greater(t, f.Offset, prev, "%s: Fields must be in increasing offset order", f.Name)
		prev = f.Offset
		if other, dup := offsets[f.Offset]; dup {
			t.Errorf("%s and %s share offset %#x", f.Name, other, f.Offset)
		}
		offsets[f.Offset] = f.Name
		for _, set := range []struct {
			m map[string]bool
			v string
		}{{names, f.Name}, {goNames, f.GoName}, {amlNames, f.AMLName}} {
			assert.NotEmpty(t, set.v, "%s: empty name", f.Name)
			assert.False(t, set.m[set.v], "%s: name %q used twice", f.Name, set.v)
			set.m[set.v] = true
		}
		require.Len(t, f.AMLName, 4, f.Name)
		for i, c := range []byte(f.AMLName) {
			ok := c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9'
			assert.True(t, ok && f.AMLName[0] != '_', "%s: AML name %q not a plain ACPI name", f.Name, f.AMLName)
		}
		assert.Contains(t, []region.Writer{region.GuestAML, region.Host}, f.Writer, "%s: writer", f.Name)
		got, ok := region.FieldByName(f.Name)
		assert.True(t, ok && got == f, "FieldByName(%q)", f.Name)
		got, ok = region.FieldAt(f.Offset)
		assert.True(t, ok && got == f, "FieldAt(%#x)", f.Offset)
	}
	assert.LessOrEqual(t, region.OffSlots+region.NumSlots*region.SlotSize, region.HeaderSize)
	assert.Equal(t, []region.Field{region.MagicWord, region.VersionWord, region.HeaderSizeWord, region.RegionSize},
		region.Fields[:4], "the header words come first, in the order a reader checks them")
	for _, p := range []region.Pair{region.HostStamp, region.Echo} {
		assert.Equal(t, p.Lo.Offset+region.Width, p.Hi.Offset, "%s/%s: low word first, then high", p.Lo.Name, p.Hi.Name)
		assert.Equal(t, p.Lo.Writer, p.Hi.Writer)
	}
	_, ok := region.FieldAt(0x60)
	assert.False(t, ok, "0x60 is reserved")
}

// The host stamp's write order is high word then low word, the read order
// the opposite; a value split in write order joins back to itself.
func TestPairOrder(t *testing.T) {
	p := region.HostStamp
	assert.Equal(t, [2]region.Field{region.HostStampHi, region.HostStampLo}, p.WriteOrder())
	assert.Equal(t, [2]region.Field{region.HostStampLo, region.HostStampHi}, p.ReadOrder())
	const v = 0x0000_019A_5E0A_1B2C
	w := p.Split(v)
	assert.Equal(t, [2]uint32{0x19A, 0x5E0A1B2C}, w)
	assert.Equal(t, uint64(v), region.Join(w[1], w[0]))
	// A reader (low, then high) racing a writer (high, then low) going from
	// v to v+1 across a carry sees the old low word with the new high word.
	old, new := p.Split(0x1_FFFF_FFFF), p.Split(0x2_0000_0000)
	torn := region.Join(old[1], new[0])
	assert.Equal(t, uint64(0x1_FFFF_FFFF+region.TornExcess), torn)
}
