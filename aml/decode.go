package aml

import (
	ebin "encoding/binary"
	"errors"
	"fmt"
	"math"
)

// scanRing is the number of recycled nodes of the declaration pass.
const scanRing = 64

// MaxDecodeDepth is the deepest nesting of terms Decode accepts; deeper
// input is refused with a *DecodeError wrapping ErrTooDeep rather than
// exhausting the stack. The encoder has no such limit: a tree it encodes
// with terms nested deeper than this does not decode.
const MaxDecodeDepth = 256

// ErrTooDeep is wrapped by the *DecodeError for input nested deeper than
// MaxDecodeDepth.
var ErrTooDeep = errors.New("terms nested too deep")

// Node is one decoded AML construct. A tree of Nodes re-encodes to the
// bytes it was decoded from (Node implements Term), and prints as ASL
// (Format).
//
// The node is kept small (72 bytes; a DSDT decodes to about one node per
// three bytes): operands and children share Kids, and the name or data
// bytes share Bytes. Use the accessor methods:
//   - Name: the name a named object defines (Device, Method, Name,
//     OperationRegion, CreateXField, External, Alias, ...), the name an
//     OpNamePath or OpCall refers to, a field unit's segment;
//   - Data: a String's characters (without the NUL), a Buffer's
//     initializer bytes (its size is Args()[0]);
//   - Args: the operands in encoding order (the defined name excluded):
//     TermArgs, targets, and raw data operands such as method flags;
//   - Children: the TermList of Scope, Device, Method, If, Else, While,
//     ..., a Package's elements, a Field's entries.
//
// Integer constants (Zero, One, Ones, BytePrefix..QWordPrefix) and field
// entries keep their value in Value. So do the raw data operands some
// operators have (a Method's flags, an OperationRegion's space, a
// Package's element count, Processor's id/address/length, ...): they are
// packed little-endian in encoding order, see Raw.
// Bytes aliases the decoded input.
type Node struct {
	Op       Op
	PkgBytes uint8  // bytes of the PkgLength encoding (1-4); 0 when the construct has none
	NArgs    uint8  // Kids[:NArgs] are operands, Kids[NArgs:] children
	Off      int32  // offset of the first byte, relative to the start of the decoded body
	Len      int32  // length in bytes of the whole construct
	Value    uint64 // integer value, raw data operand, field width or access attributes
	Bytes    []byte // name (RawName) or data bytes, see Name and Data
	Kids     []*Node
}

// hasName reports whether Bytes holds a name for op.
func (o Op) hasName() bool {
	switch o {
	case OpNamePath, OpCall, OpFieldUnit:
		return true
	}
	if s := o.spec(); s != nil {
		return s.named
	}
	return false
}

// Name returns the name the node defines or refers to, or nil.
func (n *Node) Name() RawName {
	if n.Op.hasName() {
		return RawName(n.Bytes)
	}
	return nil
}

// Data returns a String's characters or a Buffer's initializer bytes, or
// nil for other nodes.
func (n *Node) Data() []byte {
	if n.Op == StringPrefix || n.Op == BufferOp {
		return n.Bytes
	}
	return nil
}

// Raw returns the i-th raw data operand (ByteData, WordData or DWordData
// in the grammar: Method flags, Field flags, OperationRegion space,
// External type and argument count, Mutex sync level, Acquire timeout,
// Package element count, Processor id / PblkAddr / PblkLen, PowerResource
// level / order, Match operators, Fatal type / code), unpacked from Value.
// ok is false when the operator has no such operand.
func (n *Node) Raw(i int) (v uint64, ok bool) {
	s := n.Op.spec()
	if s == nil {
		return 0, false
	}
	shift, k := uint(0), 0
	for j := 0; j < len(s.args); j++ {
		size := rawSize(s.args[j])
		if size == 0 {
			continue
		}
		if k == i {
			return n.Value >> shift & (1<<(8*uint(size)) - 1), true
		}
		shift += 8 * uint(size)
		k++
	}
	return 0, false
}

// Args returns the operands: TermArgs, names and targets in encoding order
// (raw data operands are in Value, see Raw).
func (n *Node) Args() []*Node {
	k := int(n.NArgs)
	if k > len(n.Kids) {
		k = len(n.Kids)
	}
	return n.Kids[:k]
}

// Children returns the TermList, Package elements or Field entries.
func (n *Node) Children() []*Node {
	k := int(n.NArgs)
	if k > len(n.Kids) {
		k = len(n.Kids)
	}
	return n.Kids[k:]
}

// RawName is an AML NameString as encoded in the byte stream (root or
// parent prefixes, then NullName, one segment, DualNamePrefix + 2 segments
// or MultiNamePrefix + count + segments).
type RawName []byte

// DecodeError reports malformed AML. Off is the byte offset of the problem
// relative to the start of the decoded body (add 36 for an offset in the
// table), Op the construct being decoded when it was found.
type DecodeError struct {
	Off int
	Op  string
	Msg string
	Err error // a sentinel such as ErrTooDeep, or nil
}

// Unwrap returns the sentinel error, if any.
func (e *DecodeError) Unwrap() error { return e.Err }

func (e *DecodeError) Error() string {
	if e.Op != "" {
		return fmt.Sprintf("aml: offset %#x: %s: %s", e.Off, e.Op, e.Msg)
	}
	return fmt.Sprintf("aml: offset %#x: %s", e.Off, e.Msg)
}

// Decode parses an AML byte stream (a DSDT or SSDT body, after the 36-byte
// table header) into a tree whose root has Op OpRoot and the top-level
// terms as Children.
//
// Method invocations are recognised the way ACPICA's disassembler does:
// every named object declared outside method bodies (Methods with their
// argument counts, External(..., MethodObj, n), and all other objects,
// which may shadow a method) is collected with its full path, plus the
// objects an OS predefines (\_OSI is a 1-argument method); each name in a
// TermArg position is resolved with the ACPI search rules (a single
// segment: the current scope, then each parent) and takes as many
// arguments as the method declares. Names that resolve to no method take
// no arguments. Decode first tries one pass that collects declarations as
// it goes; when a later declaration could change an earlier lookup (a
// call to a method defined further down), it decodes again with a separate
// declaration pass first, so the result never depends on the order.
//
// Malformed input (unknown opcodes, truncated constructs, lengths running
// past their enclosing package, invalid names, nesting deeper than
// MaxDecodeDepth) returns a *DecodeError with the byte offset; memory use
// is bounded by a small multiple of len(body).
func Decode(body []byte) (*Node, error) {
	if len(body) > math.MaxInt32 {
		return nil, &DecodeError{Off: math.MaxInt32, Msg: fmt.Sprintf("body of %d bytes is larger than 2 GiB", len(body))}
	}
	// Fast path: one pass that declares objects as it meets them. It is
	// exact unless a name looked up in a TermArg position gets declared
	// (or shadowed) later in the table; then, or on any error, decode
	// again with a separate declaration pass.
	p := newDecoder(body)
	p.optimistic, p.decl = true, true
	if root, err := p.tree(); err == nil && !p.redo {
		return root, nil
	}
	return decodeTwoPass(body)
}

// decodeTwoPass decodes with a first pass that only collects declarations
// (skipping method bodies) and a second that builds the tree.
func decodeTwoPass(body []byte) (*Node, error) {
	p := newDecoder(body)
	// Pass 1: collect declarations. Errors are reported by pass 2, which
	// may succeed where pass 1 failed (a forward reference to a method).
	p.scan, p.decl = true, true
	p.ring = new([scanRing]Node)
	_ = p.pushTerms(len(body))
	p.scan, p.decl = false, false
	p.reset()
	return p.tree()
}

// tree parses the whole body into a root node.
func (p *decoder) tree() (*Node, error) {
	root := p.alloc(OpRoot, 0)
	if err := p.pushTerms(len(p.b)); err != nil {
		return nil, err
	}
	root.Kids = p.commit(0)
	root.Len = int32(len(p.b))
	return root, nil
}

// predefined are the objects an ACPI OS creates before loading tables.
var predefined = []struct {
	path string
	argc int8
}{
	{"_GPE", -1}, {"_PR_", -1}, {"_SB_", -1}, {"_SI_", -1}, {"_TZ_", -1},
	{"_GL_", -1}, {"_OS_", -1}, {"_REV", -1}, {"_OSI", 1},
}

type decoder struct {
	b     []byte
	pos   int
	depth int
	scan  bool // declaration pass: no tree, method bodies skipped

	decl       bool             // record declarations (outside method bodies)
	inMethod   int              // depth of method bodies being parsed
	optimistic bool             // single pass: note lookups that later declarations could change
	looked     map[uint32]uint8 // last segments of names looked up so far (optimistic)
	redo       bool             // a declaration came after a lookup of the same segment

	slab    []Node
	ring    *[scanRing]Node
	ringAt  int
	nodes   int
	maxNode int

	stack []*Node
	ptrs  []*Node

	scope  []byte              // current scope: concatenated 4-byte segments, root = empty
	scopes []byte              // stack of scope paths (see enterScope)
	ns     map[string]int8     // absolute path -> argument count, -1 = not a method
	meth   map[uint32]struct{} // last segments of methods
	key    []byte
}

func newDecoder(b []byte) *decoder {
	p := &decoder{b: b, maxNode: len(b) + 16}
	p.ns = make(map[string]int8, len(b)/32+len(predefined))
	p.meth = make(map[uint32]struct{}, len(b)/256+1)
	p.looked = make(map[uint32]uint8, len(b)/256+1)
	// Objects every ACPI OS predefines (ACPI 6.5, 5.7), as ACPICA does.
	for _, pre := range predefined {
		p.declare([]byte(pre.path), pre.argc)
	}
	return p
}

// Nodes and Kids pointers are allocated in chunks sized from the input
// (about one node per three bytes of AML), capped so that a huge input does
// not allocate everything up front.
const (
	nodeChunk = 4096 // nodes per slab allocation (at most)
	ptrChunk  = 8192 // Kids pointers per allocation (at most)
)

func (p *decoder) reset() {
	p.pos, p.depth, p.nodes = 0, 0, 0
	p.ring = nil
	p.stack = p.stack[:0]
	p.ptrs = nil
	p.scope = nil
	p.scopes = p.scopes[:0]
}

func (p *decoder) errf(off int, format string, args ...any) *DecodeError {
	return &DecodeError{Off: off, Msg: fmt.Sprintf(format, args...)}
}

func (p *decoder) alloc(op Op, off int) *Node {
	if p.scan {
		// Pass 1 keeps no tree: recycle a small ring of nodes.
		// Nothing is read back from ring nodes (see operands), so they
		// need no clearing.
		n := &p.ring[p.ringAt%len(p.ring)]
		p.ringAt++
		n.Op, n.Off = op, int32(off)
		p.nodes++
		return n
	}
	if len(p.slab) == 0 {
		// About one node per 3.5 bytes of AML: start with a little less
		// and size further chunks from what is left.
		n := (len(p.b)-off)/4 + 16
		if p.nodes > 0 {
			n = (len(p.b)-off)/3 + 16
		}
		if n > nodeChunk {
			n = nodeChunk
		}
		p.slab = make([]Node, n)
	}
	// Slab memory is fresh from make: already zero.
	n := &p.slab[0]
	p.slab = p.slab[1:]
	n.Op, n.Off = op, int32(off)
	p.nodes++
	return n
}

// commit moves p.stack[start:] into the pointer arena and returns it.
func (p *decoder) commit(start int) []*Node {
	k := len(p.stack) - start
	if k == 0 || p.scan {
		p.stack = p.stack[:start]
		return nil
	}
	if len(p.ptrs)+k > cap(p.ptrs) {
		c := (len(p.b)-p.pos)/4 + 16
		if c > ptrChunk {
			c = ptrChunk
		}
		if c < k {
			c = k
		}
		p.ptrs = make([]*Node, 0, c)
	}
	s := len(p.ptrs)
	p.ptrs = append(p.ptrs, p.stack[start:]...)
	p.stack = p.stack[:start]
	return p.ptrs[s : s+k : s+k]
}

// pushTerms parses terms from p.pos up to end onto p.stack.
func (p *decoder) pushTerms(end int) error {
	for p.pos < end {
		n, err := p.term(end, ctxTerm)
		if err != nil {
			return err
		}
		p.stack = append(p.stack, n)
	}
	return nil
}

type termCtx uint8

const (
	ctxTerm   termCtx = iota // TermArg or TermObj: names may be method calls
	ctxRef                   // names are references (package elements, DataRefObject)
	ctxSuper                 // SuperName
	ctxTarget                // Target: 0x00 is NullName
)

func isLeadNameChar(c byte) bool { return (c >= 'A' && c <= 'Z') || c == '_' }
func isNameChar(c byte) bool     { return isLeadNameChar(c) || (c >= '0' && c <= '9') }
func isNameStart(c byte) bool {
	return isLeadNameChar(c) || c == RootChar || c == ParentPrefixChar || c == DualNamePrefix || c == MultiNamePrefix
}

func (p *decoder) term(end int, ctx termCtx) (*Node, error) {
	p.depth++
	if p.depth > MaxDecodeDepth {
		p.depth--
		e := p.errf(p.pos, "terms nested deeper than %d", MaxDecodeDepth)
		e.Err = ErrTooDeep
		return nil, e
	}
	if p.nodes >= p.maxNode {
		p.depth--
		return nil, p.errf(p.pos, "more than %d nodes for %d bytes", p.maxNode, len(p.b))
	}
	n, err := p.term0(end, ctx)
	p.depth--
	return n, err
}

func (p *decoder) term0(end int, ctx termCtx) (*Node, error) {
	start := p.pos
	if start >= end {
		return nil, p.errf(start, "term expected, but the enclosing package ends at %#x", end)
	}
	c := p.b[start]
	if isNameStart(c) {
		return p.nameTerm(end, ctx)
	}
	if c == NullName && ctx == ctxTarget {
		n := p.alloc(OpNullTarget, start)
		p.pos++
		n.Len = 1
		return n, nil
	}
	var op Op
	var sp *opSpec
	oplen := 1
	if c == ExtOpPrefix {
		if start+1 >= end {
			return nil, p.errf(start, "extended opcode prefix 0x5B at the end of the enclosing package (%#x)", end)
		}
		op = ExtendedOp(p.b[start+1])
		sp = &extTable[p.b[start+1]]
		oplen = 2
		if sp.name == "" {
			return nil, p.errf(start, "unknown extended opcode 0x5B 0x%02X", p.b[start+1])
		}
	} else {
		op = Op(c)
		sp = &opTable[c]
		if sp.name == "" {
			return nil, p.errf(start, "unknown opcode 0x%02X", c)
		}
	}
	n := p.alloc(op, start)
	p.pos += oplen
	switch op {
	case BytePrefix:
		return p.imm(n, end, 1)
	case WordPrefix:
		return p.imm(n, end, 2)
	case DWordPrefix:
		return p.imm(n, end, 4)
	case QWordPrefix:
		return p.imm(n, end, 8)
	case OnesOp:
		n.Value = ^uint64(0)
		n.Len = 1
		return n, nil
	case OneOp:
		n.Value = 1
		n.Len = 1
		return n, nil
	case StringPrefix:
		for i := p.pos; i < end; i++ {
			if p.b[i] == 0 {
				n.Bytes = p.b[p.pos:i:i]
				p.pos = i + 1
				n.Len = int32(p.pos - start)
				return n, nil
			}
		}
		return nil, &DecodeError{Off: start, Op: "String", Msg: fmt.Sprintf("no terminating NUL before the enclosing package ends at %#x", end)}
	}
	if sp.args == "" {
		n.Len = int32(oplen)
		return n, nil
	}
	if err := p.operands(n, sp, start, end); err != nil {
		if de, ok := err.(*DecodeError); ok && de.Op == "" {
			de.Op = sp.name
		}
		return nil, err
	}
	n.Len = int32(p.pos - start)
	return n, nil
}

func (p *decoder) imm(n *Node, end, size int) (*Node, error) {
	if p.pos+size > end {
		return nil, &DecodeError{Off: int(n.Off), Op: n.Op.String(), Msg: fmt.Sprintf("needs %d data bytes, the enclosing package ends at %#x", size, end)}
	}
	n.Value = leUint(p.b[p.pos : p.pos+size])
	p.pos += size
	n.Len = int32(p.pos) - n.Off
	return n, nil
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

// pkgLength reads a PkgLength at p.pos (limited by end) and returns its
// value and the number of bytes it used.
func (p *decoder) pkgLength(end int) (int, int, error) {
	at := p.pos
	if at >= end {
		return 0, 0, p.errf(at, "PkgLength expected, but the enclosing package ends at %#x", end)
	}
	lead := p.b[at]
	follow := int(lead >> 6)
	if at+1+follow > end {
		return 0, 0, p.errf(at, "PkgLength needs %d bytes, the enclosing package ends at %#x", 1+follow, end)
	}
	if follow == 0 {
		p.pos++
		return int(lead & 0x3F), 1, nil
	}
	if lead&0x30 != 0 {
		return 0, 0, p.errf(at, "PkgLength lead byte 0x%02X has reserved bits 4-5 set", lead)
	}
	v := int(lead & 0x0F)
	for i := 0; i < follow; i++ {
		v |= int(p.b[at+1+i]) << (4 + 8*i)
	}
	p.pos += 1 + follow
	return v, 1 + follow, nil
}

// nameString reads a NameString at p.pos.
func (p *decoder) nameString(end int) (RawName, error) {
	start := p.pos
	i := start
	if i < end && p.b[i] == RootChar {
		i++
	} else {
		for i < end && p.b[i] == ParentPrefixChar {
			i++
		}
	}
	if i >= end {
		return nil, p.errf(start, "name path truncated by the end of the enclosing package at %#x", end)
	}
	segs := 1
	switch p.b[i] {
	case NullName:
		segs = 0
		i++
	case DualNamePrefix:
		segs = 2
		i++
	case MultiNamePrefix:
		if i+1 >= end {
			return nil, p.errf(i, "MultiNamePrefix without segment count before %#x", end)
		}
		segs = int(p.b[i+1])
		if segs == 0 {
			return nil, p.errf(i+1, "MultiNamePrefix segment count is 0")
		}
		i += 2
	}
	if i+4*segs > end {
		return nil, p.errf(start, "name path with %d segments truncated by the end of the enclosing package at %#x", segs, end)
	}
	for s := 0; s < segs; s++ {
		seg := p.b[i : i+4]
		if !isLeadNameChar(seg[0]) || !isNameChar(seg[1]) || !isNameChar(seg[2]) || !isNameChar(seg[3]) {
			return nil, p.errf(i, "invalid name segment %q", seg)
		}
		i += 4
	}
	p.pos = i
	return RawName(p.b[start:i:i]), nil
}

func (p *decoder) nameTerm(end int, ctx termCtx) (*Node, error) {
	start := p.pos
	name, err := p.nameString(end)
	if err != nil {
		return nil, err
	}
	n := p.alloc(OpNamePath, start)
	n.Bytes = name
	if ctx == ctxTerm {
		if argc := p.lookupMethod(name); argc >= 0 {
			n.Op = OpCall
			s0 := len(p.stack)
			for i := 0; i < argc; i++ {
				a, err := p.term(end, ctxTerm)
				if err != nil {
					p.stack = p.stack[:s0]
					if de, ok := err.(*DecodeError); ok && de.Op == "" {
						de.Op = "call of " + name.String()
					}
					return nil, err
				}
				p.stack = append(p.stack, a)
			}
			n.Kids = p.commit(s0)
			n.NArgs = uint8(argc)
		}
	}
	n.Len = int32(p.pos - start)
	return n, nil
}

// operands decodes the operands of n described by sp.args.
func (p *decoder) operands(n *Node, sp *opSpec, start, end int) error {
	if !sp.scope {
		return p.operands0(n, sp, start, end)
	}
	saved, mark := p.scope, len(p.scopes)
	err := p.operands0(n, sp, start, end)
	p.scope, p.scopes = saved, p.scopes[:mark]
	return err
}

// operands0 is operands without restoring the scope a scope-opening
// construct (sp.scope) enters.
func (p *decoder) operands0(n *Node, sp *opSpec, start, end int) error {
	pkgEnd := end
	s0 := len(p.stack)
	nargs := -1
	// In the scan pass nodes come from a recycled ring: read nothing back
	// from n or from operand nodes once other nodes have been allocated.
	op := n.Op
	var defName RawName
	var prevByte, raw uint64
	var rawShift uint
	var flags byte
	for i := 0; i < len(sp.args); i++ {
		switch sp.args[i] {
		case aPkg:
			at := p.pos
			l, w, err := p.pkgLength(end)
			if err != nil {
				return err
			}
			if l < w {
				return p.errf(at, "PkgLength %d is smaller than its own %d bytes", l, w)
			}
			pkgEnd = at + l
			if pkgEnd > end {
				return p.errf(at, "PkgLength %d runs past the end of the enclosing package (%#x > %#x)", l, pkgEnd, end)
			}
			n.PkgBytes = uint8(w)
		case aDefName:
			name, err := p.nameString(pkgEnd)
			if err != nil {
				return err
			}
			n.Bytes = name
			defName = name
			if sp.scope {
				p.enterScope(name, op == ScopeOp)
			}
		case aRefName:
			at := p.pos
			name, err := p.nameString(pkgEnd)
			if err != nil {
				return err
			}
			a := p.alloc(OpNamePath, at)
			a.Bytes = name
			a.Len = int32(p.pos - at)
			p.stack = append(p.stack, a)
		case aByte, aWord, aDWord:
			size := rawSize(sp.args[i])
			if p.pos+size > pkgEnd {
				return p.errf(p.pos, "needs %d data bytes, the enclosing package ends at %#x", size, pkgEnd)
			}
			v := leUint(p.b[p.pos : p.pos+size])
			p.pos += size
			if rawShift == 0 {
				flags = byte(v)
			}
			if p.declaring() && i == len(sp.args)-1 && op == ExternalOp {
				p.declareExternal(defName, prevByte, v)
			}
			prevByte = v
			raw |= v << rawShift
			rawShift += 8 * uint(size)
		case aTermArg, aDataRef, aSuper, aTarget:
			ctx := ctxTerm
			switch sp.args[i] {
			case aDataRef:
				ctx = ctxRef
			case aSuper:
				ctx = ctxSuper
			case aTarget:
				ctx = ctxTarget
			}
			a, err := p.term(pkgEnd, ctx)
			if err != nil {
				return err
			}
			p.stack = append(p.stack, a)
		case aTerms, aFields, aElems, aBytes:
			nargs = len(p.stack) - s0
			switch sp.args[i] {
			case aTerms:
				if op == MethodOp {
					if p.declaring() {
						p.declare(p.scope, int8(flags&7))
					}
					if p.scan {
						p.pos = pkgEnd
						break
					}
					p.inMethod++
					err := p.pushTerms(pkgEnd)
					p.inMethod--
					if err != nil {
						return err
					}
					break
				}
				if p.declaring() && sp.scope && op != ScopeOp {
					p.declare(p.scope, -1)
				}
				if err := p.pushTerms(pkgEnd); err != nil {
					return err
				}
			case aFields:
				if err := p.fieldList(pkgEnd); err != nil {
					return err
				}
			case aElems:
				if p.scan {
					// Package elements declare nothing.
					p.pos = pkgEnd
					break
				}
				for p.pos < pkgEnd {
					e, err := p.term(pkgEnd, ctxRef)
					if err != nil {
						return err
					}
					p.stack = append(p.stack, e)
				}
			case aBytes:
				n.Bytes = p.b[p.pos:pkgEnd:pkgEnd]
				p.pos = pkgEnd
			}
		}
	}
	if nargs < 0 {
		nargs = len(p.stack) - s0
	}
	n.Kids = p.commit(s0)
	n.NArgs = uint8(nargs)
	if rawShift > 0 {
		n.Value = raw
	}
	if p.declaring() && !sp.scope && defName != nil {
		p.declareRel(defName, -1)
	}
	if p.pos != pkgEnd && sp.args[0] == aPkg {
		return p.errf(p.pos, "package declared to end at %#x, contents end at %#x", pkgEnd, p.pos)
	}
	return nil
}

func (p *decoder) fieldList(end int) error {
	for p.pos < end {
		at := p.pos
		c := p.b[at]
		var e *Node
		switch {
		case c == 0x00: // ReservedField
			e = p.alloc(OpFieldReserved, at)
			p.pos++
			v, w, err := p.pkgLength(end)
			if err != nil {
				return err
			}
			e.Value, e.PkgBytes = uint64(v), uint8(w)
		case c == 0x01: // AccessField
			if at+3 > end {
				return p.errf(at, "AccessAs entry needs 3 bytes, the field list ends at %#x", end)
			}
			e = p.alloc(OpFieldAccess, at)
			e.Value = uint64(p.b[at+1]) | uint64(p.b[at+2])<<8
			p.pos += 3
		case c == 0x02: // ConnectField
			e = p.alloc(OpFieldConnect, at)
			p.pos++
			if p.pos < end && p.b[p.pos] == BufferOp {
				a, err := p.term(end, ctxRef)
				if err != nil {
					return err
				}
				e.Kids, e.NArgs = p.one(a), 1
			} else {
				a := p.alloc(OpNamePath, p.pos)
				name, err := p.nameString(end)
				if err != nil {
					return err
				}
				a.Bytes = name
				a.Len = int32(p.pos) - a.Off
				e.Kids, e.NArgs = p.one(a), 1
			}
		case c == 0x03: // ExtendedAccessField
			if at+4 > end {
				return p.errf(at, "extended AccessAs entry needs 4 bytes, the field list ends at %#x", end)
			}
			e = p.alloc(OpFieldExtAccess, at)
			e.Value = uint64(p.b[at+1]) | uint64(p.b[at+2])<<8 | uint64(p.b[at+3])<<16
			p.pos += 4
		case isLeadNameChar(c):
			if at+4 > end {
				return p.errf(at, "field name truncated by the end of the field list at %#x", end)
			}
			seg := p.b[at : at+4 : at+4]
			if !isNameChar(seg[1]) || !isNameChar(seg[2]) || !isNameChar(seg[3]) {
				return p.errf(at, "invalid field name %q", seg)
			}
			e = p.alloc(OpFieldUnit, at)
			e.Bytes = seg
			p.pos += 4
			v, w, err := p.pkgLength(end)
			if err != nil {
				return err
			}
			e.Value, e.PkgBytes = uint64(v), uint8(w)
			if p.declaring() {
				p.declareRel(RawName(seg), -1)
			}
		default:
			return p.errf(at, "invalid field list entry 0x%02X", c)
		}
		e.Len = int32(p.pos - at)
		p.stack = append(p.stack, e)
	}
	return nil
}

// one returns a one-element Kids slice holding a.
func (p *decoder) one(a *Node) []*Node {
	s := len(p.stack)
	p.stack = append(p.stack, a)
	return p.commit(s)
}

// ---- namespace -------------------------------------------------------

// splitName returns the prefix of a valid raw name (root, number of
// parent prefixes) and its concatenated segments.
func splitName(n RawName) (root bool, parents int, segs []byte) {
	i := 0
	if i < len(n) && n[i] == RootChar {
		root = true
		i++
	}
	for i < len(n) && n[i] == ParentPrefixChar {
		parents++
		i++
	}
	if i >= len(n) {
		return
	}
	switch n[i] {
	case NullName:
		return root, parents, nil
	case DualNamePrefix:
		i++
	case MultiNamePrefix:
		i += 2
	}
	if i > len(n) {
		i = len(n)
	}
	return root, parents, n[i:]
}

// absPath appends to dst the absolute path of name relative to scope
// (without searching parents). ok is false when parent prefixes go above
// the root.
func absPath(dst []byte, scope []byte, name RawName) ([]byte, bool) {
	root, parents, segs := splitName(name)
	if root {
		return append(dst, segs...), true
	}
	if parents*4 > len(scope) {
		return dst, false
	}
	dst = append(dst, scope[:len(scope)-parents*4]...)
	return append(dst, segs...), true
}

// enterScope makes the scope named by name (relative to the current one)
// current. The new path is appended to p.scopes, a stack of paths that
// operands truncates back when the construct ends; earlier paths are never modified, so p.scope may
// keep pointing into an older backing array after a reallocation.
func (p *decoder) enterScope(name RawName, search bool) {
	mark := len(p.scopes)
	if search {
		// Scope() refers to an existing object: apply the search rules.
		root, parents, segs := splitName(name)
		if !root && parents == 0 && len(segs) == 4 {
			p.noteLookup(segs, lookedName|lookedSensitive)
			for base := len(p.scope); base >= 0; base -= 4 {
				p.key = append(append(p.key[:0], p.scope[:base]...), segs...)
				if _, ok := p.ns[string(p.key)]; ok {
					p.scopes = append(p.scopes, p.key...)
					p.scope = p.scopes[mark:len(p.scopes):len(p.scopes)]
					return
				}
			}
		}
	}
	abs, ok := absPath(p.scopes, p.scope, name)
	if !ok {
		abs = append(p.scopes, p.scope...)
	}
	p.scopes = abs
	p.scope = p.scopes[mark:len(p.scopes):len(p.scopes)]
}

func (p *decoder) declaring() bool { return p.decl && p.inMethod == 0 }

// Flags of decoder.looked.
const (
	lookedName      = 1 << iota // a name with this last segment was looked up
	lookedSensitive             // and the result depends on non-methods too
)

// noteLookup records, in the optimistic single pass, that a name ending in
// seg was resolved: a later declaration of that segment may change the
// result.
func (p *decoder) noteLookup(seg []byte, flags uint8) {
	if p.optimistic {
		p.looked[ebin.LittleEndian.Uint32(seg)] |= flags
	}
}

// declare records the absolute path abs (argc -1 = not a method).
func (p *decoder) declare(abs []byte, argc int8) {
	if len(abs) < 4 {
		return
	}
	if old, ok := p.ns[string(abs)]; ok && (argc < 0 || old >= 0) {
		return
	}
	if p.optimistic {
		// A later method may be the target of an earlier lookup; a later
		// non-method only matters if it may shadow what an earlier lookup
		// resolved to (a method, or a Scope's object).
		if f := p.looked[ebin.LittleEndian.Uint32(abs[len(abs)-4:])]; f&lookedSensitive != 0 || (argc >= 0 && f != 0) {
			p.redo = true
		}
	}
	p.ns[string(abs)] = argc
	if argc >= 0 {
		p.meth[ebin.LittleEndian.Uint32(abs[len(abs)-4:])] = struct{}{}
	}
}

func (p *decoder) declareRel(name RawName, argc int8) {
	abs, ok := absPath(p.key[:0], p.scope, name)
	p.key = abs
	if ok {
		p.declare(abs, argc)
	}
}

// ObjectType value of External for methods.
const externalMethodObj = 8

func (p *decoder) declareExternal(name RawName, typ, argc uint64) {
	if typ == externalMethodObj {
		p.declareRel(name, int8(argc&7))
	} else {
		p.declareRel(name, -1)
	}
}

// lookupMethod returns the argument count of the method name refers to from
// the current scope, or -1 when it does not resolve to a method.
func (p *decoder) lookupMethod(name RawName) int {
	argc := p.lookupMethod0(name)
	if argc >= 0 && p.optimistic {
		_, _, segs := splitName(name)
		p.noteLookup(segs[len(segs)-4:], lookedSensitive)
	}
	return argc
}

func (p *decoder) lookupMethod0(name RawName) int {
	root, parents, segs := splitName(name)
	if len(segs) < 4 {
		return -1
	}
	p.noteLookup(segs[len(segs)-4:], lookedName)
	if _, ok := p.meth[ebin.LittleEndian.Uint32(segs[len(segs)-4:])]; !ok {
		return -1
	}
	if root || parents > 0 || len(segs) > 4 {
		abs, ok := absPath(p.key[:0], p.scope, name)
		p.key = abs
		if !ok {
			return -1
		}
		if v, ok := p.ns[string(abs)]; ok {
			return int(v)
		}
		return -1
	}
	for base := len(p.scope); base >= 0; base -= 4 {
		p.key = append(append(p.key[:0], p.scope[:base]...), segs...)
		if v, ok := p.ns[string(p.key)]; ok {
			return int(v)
		}
	}
	return -1
}

// String returns the name in ASL syntax ("\\_SB.PCI0", "^FOO"), with
// trailing underscores of each segment removed as iasl prints them.
func (n RawName) String() string {
	return string(n.AppendASL(make([]byte, 0, len(n)+len(n)/4)))
}

// AppendASL appends the name in ASL syntax (see String) to b.
func (n RawName) AppendASL(b []byte) []byte {
	root, parents, segs := splitName(n)
	if root {
		b = append(b, '\\')
	}
	for i := 0; i < parents; i++ {
		b = append(b, '^')
	}
	for i := 0; i+4 <= len(segs); i += 4 {
		if i > 0 {
			b = append(b, '.')
		}
		seg := segs[i : i+4]
		k := 4
		for k > 1 && seg[k-1] == '_' {
			k--
		}
		b = append(b, seg[:k]...)
	}
	return b
}

// Segments returns the 4-character segments of the name.
func (n RawName) Segments() []string {
	_, _, segs := splitName(n)
	out := make([]string, 0, len(segs)/4)
	for i := 0; i+4 <= len(segs); i += 4 {
		out = append(out, string(segs[i:i+4]))
	}
	return out
}
