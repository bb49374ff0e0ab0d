package aml

import (
	"bytes"
	ebin "encoding/binary"
)

// Node is one decoded AML construct. It is a small value (pass it by value)
// that refers into the decoded tree and into the input bytes, which the
// tree aliases: names, strings, buffer bytes and integer values are read
// from the input when asked for, not copied.
//
// A tree of Nodes re-encodes to the bytes it was decoded from (Node
// implements Term) and prints as ASL (Format). The accessors:
//   - Op, Off, Len, End, Bytes: the kind of construct and where it is;
//   - Name: the name a named object defines (Device, Method, Name,
//     OperationRegion, CreateXField, External, Alias, ...), the name an
//     OpNamePath or OpCall refers to, a field unit's segment;
//   - Data: a String's characters (without the NUL), a Buffer's
//     initializer bytes (its size is its first argument);
//   - Value: an integer constant's value (Zero, One, Ones, BytePrefix ..
//     QWordPrefix), a field entry's width or access attributes, or the raw
//     data operands of an operator packed little-endian (see Raw);
//   - Args, Children (and AppendArgs, AppendChildren without allocating):
//     the operands in encoding order (the defined name and raw data
//     operands excluded), and the TermList of Scope, Device, Method, If,
//     Else, While, ..., a Package's elements, a Field's entries.
//
// The zero Node is not part of any tree (IsZero); its accessors return
// zero values.
type Node struct {
	t *tree
	ref
}

// ref is a Node without its tree: what the printer keeps on its scratch
// stack (no pointer, so no write barriers).
type ref struct {
	idx int32 // index of a stored node in t.nodes; -1 for a leaf
	op  Op
	off uint32
	end uint32
}

// tree is the decoded form of one AML body. Only constructs with operands
// or a body (operators, named objects, method calls, Connection field
// entries) are stored, in preorder; leaves (integer constants, strings,
// Locals and Args, name references, field units, ...) are found again in
// the input between the stored nodes, where their kind follows from the
// operand grammar. A stored node takes 12 bytes.
type tree struct {
	b     []byte
	nodes []node
}

type node struct {
	off, end uint32
	op       Op
	skip     uint16 // stored nodes in this subtree, itself included; skipFar: too many
}

// skipFar marks a subtree of skipFar or more stored nodes: its next sibling
// is found by a binary search on the offsets.
const skipFar = 0xFFFF

// after returns the index of the first stored node after the subtree of i.
func (t *tree) after(i int32) int32 {
	nd := &t.nodes[i]
	if nd.skip != skipFar {
		return i + int32(nd.skip)
	}
	lo, hi := int(i)+1, len(t.nodes)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.nodes[m].off < nd.end {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return int32(lo)
}

func (t *tree) stored(i int32) Node {
	nd := &t.nodes[i]
	return Node{t: t, ref: ref{idx: i, op: nd.op, off: nd.off, end: nd.end}}
}

// isLeaf reports whether the decoder stores no node for op: its extent
// and value follow from the input bytes alone.
func (o Op) isLeaf() bool {
	switch o {
	case OpNamePath, OpNullTarget, OpFieldUnit, OpFieldReserved, OpFieldAccess, OpFieldExtAccess,
		BytePrefix, WordPrefix, DWordPrefix, QWordPrefix, StringPrefix:
		return true
	}
	s := o.spec()
	return s != nil && s.name != "" && s.args == ""
}

// pkgLenBytes is the number of bytes of the PkgLength whose lead byte is c.
func pkgLenBytes(c byte) int { return 1 + int(c>>6) }

// pkgLenValue decodes the (already validated) PkgLength at b[0:].
func pkgLenValue(b []byte) int {
	follow := int(b[0] >> 6)
	if follow == 0 {
		return int(b[0] & 0x3F)
	}
	v := int(b[0] & 0x0F)
	for i := 0; i < follow; i++ {
		v |= int(b[1+i]) << (4 + 8*i)
	}
	return v
}

// nameLen returns the length of the (already validated) NameString at
// b[pos:].
func nameLen(b []byte, pos int) int {
	i := pos
	if b[i] == RootChar {
		i++
	} else {
		for b[i] == ParentPrefixChar {
			i++
		}
	}
	switch b[i] {
	case NullName:
		i++
	case DualNamePrefix:
		i += 9
	case MultiNamePrefix:
		i += 2 + 4*int(b[i+1])
	default:
		i += 4
	}
	return i - pos
}

// leafAt returns the kind and length of the leaf at pos in context ctx.
// It mirrors the decoder (term0, fieldList) for the constructs isLeaf
// names.
func (t *tree) leafAt(pos int, ctx termCtx) (Op, int) {
	b := t.b
	c := b[pos]
	if ctx == ctxField {
		switch c {
		case 0x00:
			return OpFieldReserved, 1 + pkgLenBytes(b[pos+1])
		case 0x01:
			return OpFieldAccess, 3
		case 0x03:
			return OpFieldExtAccess, 4
		}
		return OpFieldUnit, 4 + pkgLenBytes(b[pos+4])
	}
	if isNameStart(c) {
		return OpNamePath, nameLen(b, pos)
	}
	switch c {
	case NullName:
		if ctx == ctxTarget {
			return OpNullTarget, 1
		}
	case ExtOpPrefix:
		return ExtendedOp(b[pos+1]), 2
	case BytePrefix:
		return BytePrefix, 2
	case WordPrefix:
		return WordPrefix, 3
	case DWordPrefix:
		return DWordPrefix, 5
	case QWordPrefix:
		return QWordPrefix, 9
	case StringPrefix:
		return StringPrefix, bytes.IndexByte(b[pos+1:], 0) + 2
	}
	return Op(c), 1
}

// Kinds of parts reported by partIter besides the opSpec argument kinds:
// a method call's argument or a Connection's target (kArg).
const kArg = 'a'

// isArgKind reports whether a kid of this kind is an operand (Args) rather
// than a child (Children).
func isArgKind(k byte) bool {
	switch k {
	case kArg, aRefName, aTermArg, aDataRef, aSuper, aTarget:
		return true
	}
	return false
}

// partIter walks the parts of a stored node in encoding order. After each
// successful next, kind is an opSpec argument kind: for aPkg, aDefName,
// aByte, aWord, aDWord and aBytes the part is b[at:to] of the input and
// hasKid is false; for operand kinds (see isArgKind) and list kinds
// (aTerms, aElems, aFields) kid is the operand or child. The opcode itself
// and a method call's name are not parts.
type partIter struct {
	t    *tree
	sp   string // the operand grammar; sp[si:] is left to walk
	si   int32
	pos  int32
	next int32 // the next stored node not yet visited
	end  int32
	at   int32
	to   int32
	list byte // list kind being walked (0: none)
	ctx  termCtx

	kind   byte
	hasKid bool
	kid    ref
}

// init starts the walk of n's parts (nothing for leaves).
func (it *partIter) init(n Node) {
	if n.t == nil || n.idx < 0 {
		return
	}
	it.t, it.next, it.end = n.t, n.idx+1, int32(n.end)
	switch n.op {
	case OpRoot:
		it.list, it.ctx = aTerms, ctxTerm
	case OpCall:
		it.pos = int32(int(n.off) + nameLen(n.t.b, int(n.off)))
		it.list, it.ctx = kArg, ctxTerm
	case OpFieldConnect:
		it.pos, it.sp = int32(n.off)+1, "a"
	default:
		if sp := n.op.spec(); sp != nil {
			it.pos, it.sp = int32(int(n.off)+n.op.codeLen()), sp.args
		}
	}
}

// kidAt returns the kid at it.pos (context ctx) and moves past it.
func (it *partIter) kidAt(ctx termCtx) ref {
	t := it.t
	if int(it.next) < len(t.nodes) && t.nodes[it.next].off == uint32(it.pos) {
		nd := &t.nodes[it.next]
		k := ref{idx: it.next, op: nd.op, off: nd.off, end: nd.end}
		it.pos = int32(nd.end)
		it.next = t.after(it.next)
		return k
	}
	op, l := t.leafAt(int(it.pos), ctx)
	k := ref{idx: -1, op: op, off: uint32(it.pos), end: uint32(int(it.pos) + l)}
	it.pos += int32(l)
	return k
}

// Node returns the current kid as a Node.
func (it *partIter) Node() Node { return Node{t: it.t, ref: it.kid} }

// advance moves to the next part; false at the end.
func (it *partIter) advance() bool {
	for {
		if it.list != 0 {
			if it.pos < it.end {
				it.kind, it.hasKid = it.list, true
				it.kid = it.kidAt(it.ctx)
				return true
			}
			it.list = 0
		}
		if int(it.si) >= len(it.sp) {
			return false
		}
		k := it.sp[it.si]
		it.si++ // (an index, not a resliced string: no pointer store per step)
		it.kind, it.at, it.hasKid = k, it.pos, false
		switch k {
		case aPkg:
			it.pos += int32(pkgLenBytes(it.t.b[it.pos]))
		case aDefName:
			it.pos += int32(nameLen(it.t.b, int(it.pos)))
		case aByte, aWord, aDWord:
			it.pos += int32(rawSize(k))
		case aBytes:
			it.pos = it.end
		case aRefName, aTermArg:
			it.hasKid, it.kid = true, it.kidAt(ctxTerm)
		case aDataRef, kArg:
			it.hasKid, it.kid = true, it.kidAt(ctxRef)
		case aSuper:
			it.hasKid, it.kid = true, it.kidAt(ctxSuper)
		case aTarget:
			it.hasKid, it.kid = true, it.kidAt(ctxTarget)
		case aTerms:
			it.list, it.ctx = k, ctxTerm
			continue
		case aElems:
			it.list, it.ctx = k, ctxRef
			continue
		case aFields:
			it.list, it.ctx = k, ctxField
			continue
		}
		it.to = it.pos
		return true
	}
}

// codeLen is the number of opcode bytes of o (0 for pseudo opcodes).
func (o Op) codeLen() int {
	switch {
	case o.IsExtended():
		return 2
	case o < 0x100:
		return 1
	}
	return 0
}

// IsZero reports whether n is the zero Node (part of no tree).
func (n Node) IsZero() bool { return n.t == nil }

// Op returns the kind of construct.
func (n Node) Op() Op { return n.op }

// Off returns the offset of the construct's first byte, relative to the
// start of the decoded body.
func (n Node) Off() int { return int(n.off) }

// Len returns the length in bytes of the whole construct.
func (n Node) Len() int { return int(n.end - n.off) }

// End returns the offset just past the construct (Off + Len).
func (n Node) End() int { return int(n.end) }

// Bytes returns the encoded construct: the input bytes from Off to End.
func (n Node) Bytes() []byte {
	if n.t == nil {
		return nil
	}
	return n.t.b[n.off:n.end:n.end]
}

// PkgBytes returns the number of bytes (1-4) of the construct's PkgLength
// (the width of a field unit's or reserved field's length), 0 when it has
// none.
func (n Node) PkgBytes() int {
	if n.t == nil {
		return 0
	}
	b := n.t.b
	switch n.op {
	case OpFieldUnit:
		return pkgLenBytes(b[n.off+4])
	case OpFieldReserved:
		return pkgLenBytes(b[n.off+1])
	}
	if s := n.op.spec(); s != nil && len(s.args) > 0 && s.args[0] == aPkg {
		return pkgLenBytes(b[int(n.off)+n.op.codeLen()])
	}
	return 0
}

// Value returns an integer constant's value, a field unit's or reserved
// field's width in bits, an AccessAs entry's AccessType | AccessAttrib<<8
// (| AccessLength<<16 for the extended form), or the raw data operands of
// an operator packed little-endian in encoding order (see Raw); 0 for
// other nodes.
func (n Node) Value() uint64 {
	if n.t == nil {
		return 0
	}
	b := n.t.b
	switch n.op {
	case ZeroOp:
		return 0
	case OneOp:
		return 1
	case OnesOp:
		return ^uint64(0)
	case BytePrefix, WordPrefix, DWordPrefix, QWordPrefix:
		return leUint(b[n.off+1 : n.end])
	case OpFieldUnit:
		return uint64(pkgLenValue(b[n.off+4:]))
	case OpFieldReserved:
		return uint64(pkgLenValue(b[n.off+1:]))
	case OpFieldAccess, OpFieldExtAccess:
		return leUint(b[n.off+1 : n.end])
	}
	var v uint64
	var shift uint
	var it partIter
	for it.init(n); it.advance(); {
		if rawSize(it.kind) > 0 {
			v |= leUint(b[it.at:it.to]) << shift
			shift += 8 * uint(it.to-it.at)
		}
	}
	return v
}

// Raw returns the i-th raw data operand (ByteData, WordData or DWordData
// in the grammar: Method flags, Field flags, OperationRegion space,
// External type and argument count, Mutex sync level, Acquire timeout,
// Package element count, Processor id / PblkAddr / PblkLen, PowerResource
// level / order, Match operators, Fatal type / code). ok is false when the
// operator has no such operand.
func (n Node) Raw(i int) (v uint64, ok bool) {
	k := 0
	var it partIter
	for it.init(n); it.advance(); {
		if rawSize(it.kind) == 0 {
			continue
		}
		if k == i {
			return leUint(n.t.b[it.at:it.to]), true
		}
		k++
	}
	return 0, false
}

// Name returns the name the node defines or refers to, or nil.
func (n Node) Name() RawName {
	if n.t == nil {
		return nil
	}
	b := n.t.b
	switch n.op {
	case OpNamePath:
		return RawName(b[n.off:n.end:n.end])
	case OpCall:
		e := int(n.off) + nameLen(b, int(n.off))
		return RawName(b[n.off:e:e])
	case OpFieldUnit:
		return RawName(b[n.off : n.off+4 : n.off+4])
	}
	if s := n.op.spec(); s == nil || !s.named {
		return nil
	}
	var it partIter
	for it.init(n); it.advance(); {
		if it.kind == aDefName {
			return RawName(b[it.at:it.to:it.to])
		}
	}
	return nil
}

// Data returns a String's characters or a Buffer's initializer bytes, or
// nil for other nodes.
func (n Node) Data() []byte {
	if n.t == nil {
		return nil
	}
	b := n.t.b
	switch n.op {
	case StringPrefix:
		return b[n.off+1 : n.end-1 : n.end-1]
	case BufferOp:
		var it partIter
		for it.init(n); it.advance(); {
			if it.kind == aBytes {
				return b[it.at:it.to:it.to]
			}
		}
	}
	return nil
}

// AppendArgs appends the operands (TermArgs, names and targets in encoding
// order; raw data operands are in Raw) to dst and returns the extended
// slice.
func (n Node) AppendArgs(dst []Node) []Node {
	var it partIter
	for it.init(n); it.advance(); {
		if it.hasKid && isArgKind(it.kind) {
			dst = append(dst, it.Node())
		}
	}
	return dst
}

// AppendChildren appends the TermList, Package elements or Field entries
// to dst and returns the extended slice.
func (n Node) AppendChildren(dst []Node) []Node {
	var it partIter
	for it.init(n); it.advance(); {
		if it.hasKid && !isArgKind(it.kind) {
			dst = append(dst, it.Node())
		}
	}
	return dst
}

// appendRefs appends the operands (args) or the children of n to dst.
func (n Node) appendRefs(dst []ref, args bool) []ref {
	var it partIter
	for it.init(n); it.advance(); {
		if it.hasKid && isArgKind(it.kind) == args {
			dst = append(dst, it.kid)
		}
	}
	return dst
}

// Args returns the operands in a new slice (see AppendArgs).
func (n Node) Args() []Node { return n.AppendArgs(nil) }

// Children returns the TermList, Package elements or Field entries in a
// new slice (see AppendChildren).
func (n Node) Children() []Node { return n.AppendChildren(nil) }

// Arg returns operand i, or the zero Node when there is none.
func (n Node) Arg(i int) Node {
	k := 0
	var it partIter
	for it.init(n); it.advance(); {
		if !it.hasKid || !isArgKind(it.kind) {
			continue
		}
		if k == i {
			return it.Node()
		}
		k++
	}
	return Node{}
}

func leUint(b []byte) uint64 {
	switch len(b) {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(ebin.LittleEndian.Uint16(b))
	case 4:
		return uint64(ebin.LittleEndian.Uint32(b))
	case 8:
		return ebin.LittleEndian.Uint64(b)
	}
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}
