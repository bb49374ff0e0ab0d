package aml

import (
	ebin "encoding/binary"
	"errors"
	"fmt"
	"math"
)

// MaxDecodeDepth is the deepest nesting of terms Decode accepts; deeper
// input is refused with a *DecodeError wrapping ErrTooDeep rather than
// exhausting the stack. The encoder has no such limit: a tree it encodes
// with terms nested deeper than this does not decode.
const MaxDecodeDepth = 256

// ErrTooDeep is wrapped by the *DecodeError for input nested deeper than
// MaxDecodeDepth.
var ErrTooDeep = errors.New("terms nested too deep")

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
// table header) into a tree and returns its root: a Node with Op OpRoot
// and the top-level terms as Children. The tree aliases body, which must
// not change while the tree is in use.
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
// MaxDecodeDepth) returns a *DecodeError with the byte offset. Memory use
// is a small multiple of len(body): the tree stores 12 bytes per operator
// or named object and nothing for constants, strings and name references,
// which are read from body when asked for.
func Decode(body []byte) (Node, error) {
	if len(body) > math.MaxInt32 {
		return Node{}, &DecodeError{Off: math.MaxInt32, Msg: fmt.Sprintf("body of %d bytes is larger than 2 GiB", len(body))}
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
	return p.twoPass()
}

// decodeTwoPass decodes body with a separate declaration pass.
func decodeTwoPass(body []byte) (Node, error) { return newDecoder(body).twoPass() }

// twoPass decodes again (reusing p's memory) with a first pass that only
// collects declarations (skipping method bodies and keeping no tree) and a
// second that builds the tree.
func (p *decoder) twoPass() (Node, error) {
	p.restart()
	p.optimistic, p.redo = false, false
	// Pass 1: collect declarations. Errors are reported by pass 2, which
	// may succeed where pass 1 failed (a forward reference to a method).
	p.scan, p.decl = true, true
	_ = p.pushTerms(len(p.b))
	p.scan, p.decl = false, false
	p.pos, p.depth, p.count, p.scope = 0, 0, 0, nsRoot
	return p.tree()
}

// tree parses the whole body into a root node.
func (p *decoder) tree() (Node, error) {
	root := p.open(OpRoot, 0)
	if err := p.pushTerms(len(p.b)); err != nil {
		return Node{}, err
	}
	p.close(root)
	t := &tree{b: p.b, nodes: p.nodes}
	return t.stored(0), nil
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

	decl       bool // record declarations (outside method bodies)
	inMethod   int  // depth of method bodies being parsed
	optimistic bool // single pass: note lookups that later declarations could change
	redo       bool // a declaration came after a lookup of the same segment

	nodes   []node
	count   int // terms decoded (leaves included)
	maxNode int

	ns    namespace
	scope int32 // current scope (namespace entry)
}

// Stored nodes are allocated from an estimate of one per 7 bytes of AML
// (QEMU's DSDTs have one per 7-10 bytes); a denser table grows the slice.
const bytesPerNode = 7

func newDecoder(b []byte) *decoder {
	p := &decoder{b: b, maxNode: len(b) + 16}
	p.nodes = make([]node, 0, len(b)/bytesPerNode+16)
	// About one declared name per 32 bytes of AML.
	p.ns.init(len(b)/32 + 2*len(predefined))
	p.predeclare()
	return p
}

// predeclare declares the objects every ACPI OS predefines (ACPI 6.5,
// 5.7), as ACPICA does.
func (p *decoder) predeclare() {
	for _, pre := range predefined {
		p.declareRel(RawName(pre.path), pre.argc)
	}
}

// restart clears the tree and the namespace for another decode of p.b.
func (p *decoder) restart() {
	p.pos, p.depth, p.count, p.inMethod = 0, 0, 0, 0
	p.nodes = p.nodes[:0]
	p.scope = nsRoot
	p.ns.reset()
	p.predeclare()
}

func (p *decoder) errf(off int, format string, args ...any) *DecodeError {
	return &DecodeError{Off: off, Msg: fmt.Sprintf(format, args...)}
}

// open starts a stored node at off and returns its index (-1 in the
// declaration pass, which keeps no tree).
func (p *decoder) open(op Op, off int) int {
	if p.scan {
		return -1
	}
	p.nodes = append(p.nodes, node{off: uint32(off), op: op})
	return len(p.nodes) - 1
}

// close ends the stored node i at p.pos.
func (p *decoder) close(i int) {
	if i < 0 {
		return
	}
	nd := &p.nodes[i]
	nd.end = uint32(p.pos)
	nd.skip = uint16(min(len(p.nodes)-i, skipFar))
}

// pushTerms parses terms from p.pos up to end.
func (p *decoder) pushTerms(end int) error {
	for p.pos < end {
		if err := p.term(end, ctxTerm); err != nil {
			return err
		}
	}
	return nil
}

type termCtx uint8

const (
	ctxTerm   termCtx = iota // TermArg or TermObj: names may be method calls
	ctxRef                   // names are references (package elements, DataRefObject)
	ctxSuper                 // SuperName
	ctxTarget                // Target: 0x00 is NullName
	ctxField                 // FieldList entry
)

func isLeadNameChar(c byte) bool { return (c >= 'A' && c <= 'Z') || c == '_' }
func isNameChar(c byte) bool     { return isLeadNameChar(c) || (c >= '0' && c <= '9') }
func isNameStart(c byte) bool {
	return isLeadNameChar(c) || c == RootChar || c == ParentPrefixChar || c == DualNamePrefix || c == MultiNamePrefix
}

func (p *decoder) term(end int, ctx termCtx) error {
	p.depth++
	if p.depth > MaxDecodeDepth {
		p.depth--
		e := p.errf(p.pos, "terms nested deeper than %d", MaxDecodeDepth)
		e.Err = ErrTooDeep
		return e
	}
	if p.count >= p.maxNode {
		p.depth--
		return p.errf(p.pos, "more than %d nodes for %d bytes", p.maxNode, len(p.b))
	}
	p.count++
	err := p.term0(end, ctx)
	p.depth--
	return err
}

func (p *decoder) term0(end int, ctx termCtx) error {
	start := p.pos
	if start >= end {
		return p.errf(start, "term expected, but the enclosing package ends at %#x", end)
	}
	c := p.b[start]
	if isNameStart(c) {
		return p.nameTerm(end, ctx)
	}
	if c == NullName && ctx == ctxTarget {
		p.pos++
		return nil
	}
	var op Op
	var sp *opSpec
	oplen := 1
	if c == ExtOpPrefix {
		if start+1 >= end {
			return p.errf(start, "extended opcode prefix 0x5B at the end of the enclosing package (%#x)", end)
		}
		op = ExtendedOp(p.b[start+1])
		sp = &extTable[p.b[start+1]]
		oplen = 2
		if sp.name == "" {
			return p.errf(start, "unknown extended opcode 0x5B 0x%02X", p.b[start+1])
		}
	} else {
		op = Op(c)
		sp = &opTable[c]
		if sp.name == "" {
			return p.errf(start, "unknown opcode 0x%02X", c)
		}
	}
	switch op {
	case BytePrefix:
		return p.imm(op, end, 1)
	case WordPrefix:
		return p.imm(op, end, 2)
	case DWordPrefix:
		return p.imm(op, end, 4)
	case QWordPrefix:
		return p.imm(op, end, 8)
	case StringPrefix:
		for i := start + 1; i < end; i++ {
			if p.b[i] == 0 {
				p.pos = i + 1
				return nil
			}
		}
		return &DecodeError{Off: start, Op: sp.name, Msg: fmt.Sprintf("no terminating NUL before the enclosing package ends at %#x", end)}
	}
	if sp.args == "" {
		p.pos += oplen
		return nil
	}
	n := p.open(op, start)
	p.pos += oplen
	if err := p.operands(op, sp, end); err != nil {
		if de, ok := err.(*DecodeError); ok && de.Op == "" {
			de.Op = sp.name
		}
		return err
	}
	p.close(n)
	return nil
}

func (p *decoder) imm(op Op, end, size int) error {
	if p.pos+1+size > end {
		return &DecodeError{Off: p.pos, Op: op.String(), Msg: fmt.Sprintf("needs %d data bytes, the enclosing package ends at %#x", size, end)}
	}
	p.pos += 1 + size
	return nil
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
	if follow != 0 && lead&0x30 != 0 {
		return 0, 0, p.errf(at, "PkgLength lead byte 0x%02X has reserved bits 4-5 set", lead)
	}
	p.pos += 1 + follow
	return pkgLenValue(p.b[at:]), 1 + follow, nil
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

func (p *decoder) nameTerm(end int, ctx termCtx) error {
	start := p.pos
	name, err := p.nameString(end)
	if err != nil {
		return err
	}
	if ctx != ctxTerm {
		return nil
	}
	argc := p.lookupMethod(name)
	if argc < 0 {
		return nil
	}
	n := p.open(OpCall, start)
	for i := 0; i < argc; i++ {
		if err := p.term(end, ctxTerm); err != nil {
			if de, ok := err.(*DecodeError); ok && de.Op == "" {
				de.Op = "call of " + name.String()
			}
			return err
		}
	}
	p.close(n)
	return nil
}

// operands decodes the operands of op described by sp.args.
func (p *decoder) operands(op Op, sp *opSpec, end int) error {
	if !sp.scope {
		return p.operands0(op, sp, end)
	}
	saved := p.scope
	err := p.operands0(op, sp, end)
	p.scope = saved
	return err
}

// operands0 is operands without restoring the scope a scope-opening
// construct (sp.scope) enters.
func (p *decoder) operands0(op Op, sp *opSpec, end int) error {
	pkgEnd := end
	var defName RawName
	var prevByte uint64
	var flags byte
	raws := 0
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
		case aDefName:
			name, err := p.nameString(pkgEnd)
			if err != nil {
				return err
			}
			defName = name
			if sp.scope {
				p.enterScope(name, op == ScopeOp)
			}
		case aRefName:
			if _, err := p.nameString(pkgEnd); err != nil {
				return err
			}
			p.count++
		case aByte, aWord, aDWord:
			size := rawSize(sp.args[i])
			if p.pos+size > pkgEnd {
				return p.errf(p.pos, "needs %d data bytes, the enclosing package ends at %#x", size, pkgEnd)
			}
			v := leUint(p.b[p.pos : p.pos+size])
			p.pos += size
			if raws == 0 {
				flags = byte(v)
			}
			raws++
			if p.declaring() && i == len(sp.args)-1 && op == ExternalOp {
				p.declareExternal(defName, prevByte, v)
			}
			prevByte = v
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
			if err := p.term(pkgEnd, ctx); err != nil {
				return err
			}
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
				if err := p.term(pkgEnd, ctxRef); err != nil {
					return err
				}
			}
		case aBytes:
			p.pos = pkgEnd
		}
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
		if p.count >= p.maxNode {
			return p.errf(p.pos, "more than %d nodes for %d bytes", p.maxNode, len(p.b))
		}
		p.count++
		at := p.pos
		c := p.b[at]
		switch {
		case c == 0x00: // ReservedField
			p.pos++
			if _, _, err := p.pkgLength(end); err != nil {
				return err
			}
		case c == 0x01: // AccessField
			if at+3 > end {
				return p.errf(at, "AccessAs entry needs 3 bytes, the field list ends at %#x", end)
			}
			p.pos += 3
		case c == 0x02: // ConnectField
			n := p.open(OpFieldConnect, at)
			p.pos++
			if p.pos < end && p.b[p.pos] == BufferOp {
				if err := p.term(end, ctxRef); err != nil {
					return err
				}
			} else {
				if _, err := p.nameString(end); err != nil {
					return err
				}
				p.count++
			}
			p.close(n)
		case c == 0x03: // ExtendedAccessField
			if at+4 > end {
				return p.errf(at, "extended AccessAs entry needs 4 bytes, the field list ends at %#x", end)
			}
			p.pos += 4
		case isLeadNameChar(c):
			if at+4 > end {
				return p.errf(at, "field name truncated by the end of the field list at %#x", end)
			}
			seg := p.b[at : at+4 : at+4]
			if !isNameChar(seg[1]) || !isNameChar(seg[2]) || !isNameChar(seg[3]) {
				return p.errf(at, "invalid field name %q", seg)
			}
			p.pos += 4
			if _, _, err := p.pkgLength(end); err != nil {
				return err
			}
			if p.declaring() {
				p.declareRel(RawName(seg), -1)
			}
		default:
			return p.errf(at, "invalid field list entry 0x%02X", c)
		}
	}
	return nil
}

// ---- namespace -------------------------------------------------------

// enterScope makes the scope named by name (relative to the current one)
// current; operands restores the previous one when the construct ends.
func (p *decoder) enterScope(name RawName, search bool) {
	if search {
		// Scope() refers to an existing object: apply the search rules.
		root, parents, segs := splitName(name)
		if !root && parents == 0 && len(segs) == 4 {
			seg := ebin.LittleEndian.Uint32(segs)
			p.noteLookup(seg, lookedName|lookedSensitive)
			if e := p.ns.search(p.scope, seg); e >= 0 {
				p.scope = e
				return
			}
		}
	}
	if e := p.ns.resolve(p.scope, name, true); e >= 0 {
		p.scope = e
	}
}

func (p *decoder) declaring() bool { return p.decl && p.inMethod == 0 }

// noteLookup records, in the optimistic single pass, that a name ending in
// seg was resolved: a later declaration of that segment may change the
// result.
func (p *decoder) noteLookup(seg uint32, flags uint8) {
	if p.optimistic {
		*p.ns.seg(seg) |= flags
	}
}

// declare records the namespace entry e (argc -1 = not a method).
func (p *decoder) declare(e int32, argc int8) {
	if e <= nsRoot {
		return
	}
	x := &p.ns.ents[e]
	if x.declared && (argc < 0 || x.argc >= 0) {
		return
	}
	seg := x.seg
	x.declared, x.argc = true, argc
	if p.optimistic {
		// A later method may be the target of an earlier lookup; a later
		// non-method only matters if it may shadow what an earlier lookup
		// resolved to (a method, or a Scope's object).
		if f := p.ns.segFlags(seg); f&lookedSensitive != 0 || (argc >= 0 && f&(lookedName|lookedSensitive) != 0) {
			p.redo = true
		}
	}
	if argc >= 0 {
		*p.ns.seg(seg) |= segMethod
	}
}

func (p *decoder) declareRel(name RawName, argc int8) {
	if e := p.ns.resolve(p.scope, name, true); e >= 0 {
		p.declare(e, argc)
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
	root, parents, segs := splitName(name)
	if len(segs) < 4 {
		return -1
	}
	last := ebin.LittleEndian.Uint32(segs[len(segs)-4:])
	p.noteLookup(last, lookedName)
	if p.ns.segFlags(last)&segMethod == 0 {
		return -1
	}
	var e int32
	if root || parents > 0 || len(segs) > 4 {
		e = p.ns.resolve(p.scope, name, false)
	} else {
		e = p.ns.search(p.scope, last)
	}
	if e < 0 || !p.ns.ents[e].declared || p.ns.ents[e].argc < 0 {
		return -1
	}
	p.noteLookup(last, lookedSensitive)
	return int(p.ns.ents[e].argc)
}

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
