package aml

import ebin "encoding/binary"

// namespace is the decoder's view of the ACPI namespace: the objects
// declared so far (outside method bodies) with their argument counts, as
// a tree of 4-byte segments. Entries live in one slice and are found by
// (parent, segment) through an open-addressing index, so a table's
// namespace costs a few kilobytes and no per-name allocation.
type namespace struct {
	ents  []nsEnt
	index []int32 // entry index + 1; 0 = empty slot; len is a power of two
	// segs remembers facts about last segments regardless of the path:
	// which are method names, and which were looked up (see decoder.redo).
	segs  []segEnt // open addressing; seg 0 = empty slot
	nsegs int
}

type nsEnt struct {
	parent   int32
	seg      uint32
	argc     int8 // -1: not a method
	declared bool // false: only a path to declared objects (e.g. a Scope's target)
}

type segEnt struct {
	seg   uint32
	flags uint8
}

// Flags of segEnt.
const (
	segMethod       = 1 << iota // some method has this last segment
	lookedName                  // a name with this last segment was looked up
	lookedSensitive             // and the result depends on non-methods too
)

// nsRoot is the entry of the root scope.
const nsRoot = 0

func (ns *namespace) init(capHint int) {
	if capHint < 16 {
		capHint = 16
	}
	ns.ents = make([]nsEnt, 1, capHint)
	ns.ents[0] = nsEnt{parent: -1}
	size := 16
	for size*3 < capHint*4 {
		size *= 2
	}
	ns.index = make([]int32, size)
	ns.segs = make([]segEnt, 128)
	ns.nsegs = 0
}

// reset empties the namespace, keeping its memory.
func (ns *namespace) reset() {
	ns.ents = ns.ents[:1]
	clear(ns.index)
	clear(ns.segs)
	ns.nsegs = 0
}

func segHash(parent int32, seg uint32) uint32 {
	h := seg*0x9E3779B1 ^ uint32(parent)*0x85EBCA77
	return h ^ h>>15
}

// child returns the entry for segment seg under parent, creating an
// undeclared one when create is set; -1 when absent.
func (ns *namespace) child(parent int32, seg uint32, create bool) int32 {
	mask := uint32(len(ns.index) - 1)
	for i := segHash(parent, seg) & mask; ; i = (i + 1) & mask {
		e := ns.index[i]
		if e == 0 {
			if !create {
				return -1
			}
			if (len(ns.ents)+1)*4 > len(ns.index)*3 {
				ns.grow()
				return ns.child(parent, seg, create)
			}
			ns.ents = append(ns.ents, nsEnt{parent: parent, seg: seg, argc: -1})
			ns.index[i] = int32(len(ns.ents))
			return int32(len(ns.ents) - 1)
		}
		if x := &ns.ents[e-1]; x.seg == seg && x.parent == parent {
			return e - 1
		}
	}
}

func (ns *namespace) grow() {
	ns.index = make([]int32, 2*len(ns.index))
	mask := uint32(len(ns.index) - 1)
	for k := 1; k < len(ns.ents); k++ {
		x := &ns.ents[k]
		i := segHash(x.parent, x.seg) & mask
		for ns.index[i] != 0 {
			i = (i + 1) & mask
		}
		ns.index[i] = int32(k + 1)
	}
}

// seg returns the flags slot of a last segment, creating it.
func (ns *namespace) seg(seg uint32) *uint8 {
	if (ns.nsegs+1)*4 > len(ns.segs)*3 {
		old := ns.segs
		ns.segs = make([]segEnt, 2*len(old))
		for _, s := range old {
			if s.seg != 0 {
				*ns.segSlot(s.seg) = s
			}
		}
	}
	s := ns.segSlot(seg)
	if s.seg == 0 {
		s.seg = seg
		ns.nsegs++
	}
	return &s.flags
}

// segFlags returns the flags of a last segment (0 when unknown).
func (ns *namespace) segFlags(seg uint32) uint8 { return ns.segSlot(seg).flags }

func (ns *namespace) segSlot(seg uint32) *segEnt {
	mask := uint32(len(ns.segs) - 1)
	for i := segHash(0, seg) & mask; ; i = (i + 1) & mask {
		if s := &ns.segs[i]; s.seg == seg || s.seg == 0 {
			return s
		}
	}
}

// resolve returns the entry name denotes from scope without searching
// parent scopes (creating the path when create is set), or -1 when it
// does not exist or its parent prefixes go above the root.
func (ns *namespace) resolve(scope int32, name RawName, create bool) int32 {
	root, parents, segs := splitName(name)
	e := scope
	if root {
		e = nsRoot
	}
	for ; parents > 0; parents-- {
		if e == nsRoot {
			return -1
		}
		e = ns.ents[e].parent
	}
	for i := 0; i+4 <= len(segs) && e >= 0; i += 4 {
		e = ns.child(e, ebin.LittleEndian.Uint32(segs[i:]), create)
	}
	return e
}

// search applies the ACPI search rules for a single-segment name: the
// scope, then each parent up to the root. It returns the first declared
// entry, or -1.
func (ns *namespace) search(scope int32, seg uint32) int32 {
	for s := scope; s >= 0; s = ns.ents[s].parent {
		if e := ns.child(s, seg, false); e >= 0 && ns.ents[e].declared {
			return e
		}
	}
	return -1
}
