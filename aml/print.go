package aml

import (
	"io"
	"strconv"
)

// FormatOptions control Format's output.
type FormatOptions struct {
	// Offsets prefixes each line with the byte offset of the construct that
	// starts on it, as an ASL comment: "/* 0x0024 */".
	Offsets bool
	// Base is added to every printed offset (use 36 to print offsets within
	// the table rather than within the AML body).
	Base int
	// Indent is the indentation of the top-level terms ("" by default); each
	// nesting level adds four spaces.
	Indent string
}

// Format writes n (typically the root returned by Decode) as ASL text
// close to "iasl -d" output, but with operators in function form
// (Store (Arg0, Local0), LEqual (...)): named objects with their names,
// methods with argument counts and serialization, fields with their access
// flags and the byte offset of every unit, If/Else/While blocks, packages
// and buffers one element or eight bytes per line. It writes no
// DefinitionBlock line (see acpi.DescribeTable for whole tables).
func Format(w io.Writer, n Node) error { return FormatWith(w, n, FormatOptions{}) }

// FormatWith is Format with options.
func FormatWith(w io.Writer, n Node, o FormatOptions) error {
	if n.IsZero() {
		return nil
	}
	pr := &printer{w: w, o: o, buf: make([]byte, 32<<10), t: n.t, stack: make([]ref, 256)}
	if n.Op() == OpRoot {
		pr.children(n, 0)
	} else {
		pr.terms(kidList{n.t, []ref{n.ref}}, 0)
	}
	return pr.flush()
}

type printer struct {
	w     io.Writer
	o     FormatOptions
	buf   []byte // len(buf) == cap(buf); the output is buf[:n]
	n     int
	err   error
	t     *tree
	stack []ref // scratch for the kid lists being printed: stack[:sn]; len == cap
	sn    int
}

// kids appends n's operands (args) or children to the scratch stack and
// returns them with the mark to pass to release.
func (p *printer) kids(n Node, args bool) (kidList, int) {
	start := p.sn
	st := n.appendRefs(p.stack[:p.sn], args)
	if cap(st) != len(p.stack) {
		p.stack = st[:cap(st)] // grown (rare): the only pointer store
	}
	p.sn = len(st)
	return kidList{p.t, st[start:]}, start
}

func (p *printer) release(mark int) { p.sn = mark }

// list is a list of kids of one tree.
type kidList struct {
	t    *tree
	refs []ref
}

func (l kidList) len() int      { return len(l.refs) }
func (l kidList) at(i int) Node { return Node{t: l.t, ref: l.refs[i]} }
func (l kidList) op(i int) Op   { return l.refs[i].op }

// children prints the TermList of n.
func (p *printer) children(n Node, depth int) {
	l, mark := p.kids(n, false)
	p.terms(l, depth)
	p.release(mark)
}

func (p *printer) flush() error {
	if p.err == nil && p.n > 0 {
		_, p.err = p.w.Write(p.buf[:p.n])
	}
	p.n = 0
	return p.err
}

func (p *printer) str(s string) {
	if p.n+len(s) <= len(p.buf) {
		p.n += copy(p.buf[p.n:], s)
		return
	}
	p.done(append(p.tail(), s...))
}

// tail returns the output so far; append to it and pass the result to
// done. The printer writes into buf in place and only stores a new slice
// when an append outgrew it: no pointer store (and no GC write barrier)
// per write.
func (p *printer) tail() []byte { return p.buf[:p.n] }

func (p *printer) done(b []byte) {
	if cap(b) != len(p.buf) {
		p.buf = b[:cap(b)]
	}
	p.n = len(b)
}

// line starts a new output line for the construct at offset off (-1: a
// line of its own, such as a brace, that gets no offset).
func (p *printer) line(off, depth int) {
	if p.n > 24<<10 {
		_ = p.flush()
	}
	if p.o.Offsets {
		if off < 0 {
			p.done(append(p.tail(), "             "...))
		} else {
			p.done(append(p.tail(), "/* 0x"...))
			p.done(appendHex(p.tail(), uint64(off+p.o.Base), 4))
			p.done(append(p.tail(), " */ "...))
		}
	}
	p.done(append(p.tail(), p.o.Indent...))
	for i := 0; i < depth; i++ {
		p.done(append(p.tail(), "    "...))
	}
}

func appendHex(b []byte, v uint64, digits int) []byte {
	const hexd = "0123456789ABCDEF"
	var tmp [16]byte
	i := len(tmp)
	for v != 0 || digits > 0 {
		i--
		tmp[i] = hexd[v&0xF]
		v >>= 4
		digits--
	}
	return append(b, tmp[i:]...)
}

func (p *printer) hex(v uint64, digits int) {
	p.done(append(p.tail(), "0x"...))
	p.done(appendHex(p.tail(), v, digits))
}

func isBlock(n Node) bool {
	switch n.Op() {
	case ScopeOp, MethodOp, IfOp, ElseOp, WhileOp, ExtendedOp(DeviceOp), ExtendedOp(ProcessorOp),
		ExtendedOp(PowerResOp), ExtendedOp(ThermalZoneOp), ExtendedOp(FieldOp), ExtendedOp(IndexFieldOp), ExtendedOp(BankFieldOp):
		return true
	}
	return false
}

func (p *printer) terms(l kidList, depth int) {
	for i := range l.refs {
		n := l.at(i)
		p.line(n.Off(), depth)
		p.stmt(n, depth)
		p.str("\n")
		// A blank line after a block, as iasl does, unless an Else follows.
		if isBlock(n) && i+1 < l.len() && l.op(i+1) != ElseOp {
			p.str("\n")
		}
	}
}

func (p *printer) block(n Node, depth int) {
	p.str("\n")
	p.line(-1, depth)
	p.str("{\n")
	if op := n.Op(); op == ExtendedOp(FieldOp) || op == ExtendedOp(IndexFieldOp) || op == ExtendedOp(BankFieldOp) {
		l, mark := p.kids(n, false)
		p.fields(l, depth+1)
		p.release(mark)
	} else {
		p.children(n, depth+1)
	}
	p.line(-1, depth)
	p.str("}")
}

// opOpen starts the function form of n: its ASL name from the opcode
// table and " (".
func (p *printer) opOpen(n Node) {
	p.str(n.Op().String())
	p.str(" (")
}

func (p *printer) name(n RawName) { p.done(n.AppendASL(p.tail())) }

var (
	regionSpaces = []string{"SystemMemory", "SystemIO", "PCI_Config", "EmbeddedControl", "SMBus", "SystemCMOS", "PCIBARTarget", "IPMI", "GeneralPurposeIo", "GenericSerialBus", "PCC", "PlatformRtMechanism"}
	accessTypes  = []string{"AnyAcc", "ByteAcc", "WordAcc", "DWordAcc", "QWordAcc", "BufferAcc"}
	updateRules  = []string{"Preserve", "WriteAsOnes", "WriteAsZeros"}
	objectTypes  = []string{"UnknownObj", "IntObj", "StrObj", "BuffObj", "PkgObj", "FieldUnitObj", "DeviceObj", "EventObj", "MethodObj", "MutexObj", "OpRegionObj", "PowerResObj", "ProcessorObj", "ThermalZoneObj", "BuffFieldObj", "DDBHandleObj"}
	matchOps     = []string{"MTR", "MEQ", "MLE", "MLT", "MGE", "MGT"}
)

func (p *printer) enum(names []string, v uint64, digits int) {
	if v < uint64(len(names)) {
		p.str(names[v])
		return
	}
	p.hex(v, digits)
}

func (p *printer) fieldFlags(f uint64) {
	p.enum(accessTypes, f&0x0F, 2)
	if f&0x10 != 0 {
		p.str(", Lock, ")
	} else {
		p.str(", NoLock, ")
	}
	p.enum(updateRules, (f>>5)&3, 2)
}

// stmt prints a term at statement level (the line is already started).
func (p *printer) stmt(n Node, depth int) {
	switch n.Op() {
	case ScopeOp, ExtendedOp(DeviceOp), ExtendedOp(ThermalZoneOp):
		p.opOpen(n)
		p.name(n.Name())
		p.str(")")
		p.block(n, depth)
	case MethodOp:
		flags, _ := n.Raw(0)
		p.opOpen(n)
		p.name(n.Name())
		p.str(", ")
		p.done(strconv.AppendUint(p.tail(), flags&7, 10))
		if flags&8 != 0 {
			p.str(", Serialized")
		} else {
			p.str(", NotSerialized")
		}
		if flags>>4 != 0 {
			p.str(", ")
			p.done(strconv.AppendUint(p.tail(), flags>>4, 10))
		}
		p.str(")")
		p.block(n, depth)
	case ExtendedOp(ProcessorOp), ExtendedOp(PowerResOp):
		p.opOpen(n)
		p.name(n.Name())
		for i := 0; ; i++ {
			v, ok := n.Raw(i)
			if !ok {
				break
			}
			p.str(", ")
			p.rawHex(n, i, v)
		}
		p.str(")")
		p.block(n, depth)
	case IfOp, WhileOp:
		p.opOpen(n)
		if a := n.Arg(0); !a.IsZero() {
			p.expr(a, depth)
		}
		p.str(")")
		p.block(n, depth)
	case ElseOp:
		// Else { If (...) {...} [Else {...}] } prints as ElseIf, as iasl does.
		c, mark := p.kids(n, false)
		if (c.len() == 1 && c.op(0) == IfOp) || (c.len() == 2 && c.op(0) == IfOp && c.op(1) == ElseOp) {
			p.str("ElseIf (")
			if a := c.at(0).Arg(0); !a.IsZero() {
				p.expr(a, depth)
			}
			p.str(")")
			p.block(c.at(0), depth)
			if c.len() == 2 {
				p.str("\n")
				p.line(c.at(1).Off(), depth)
				p.stmt(c.at(1), depth)
			}
			p.release(mark)
			return
		}
		p.release(mark)
		p.str(n.Op().String())
		p.block(n, depth)
	case ExtendedOp(FieldOp), ExtendedOp(IndexFieldOp), ExtendedOp(BankFieldOp):
		p.opOpen(n)
		l, mark := p.kids(n, true)
		for i := 0; i < l.len(); i++ {
			a := l.at(i)
			p.expr(a, depth)
			p.str(", ")
		}
		p.release(mark)
		flags, _ := n.Raw(0)
		p.fieldFlags(flags)
		p.str(")")
		p.block(n, depth)
	default:
		p.expr(n, depth)
	}
}

func (p *printer) fields(l kidList, depth int) {
	var bit uint64
	for i := 0; i < l.len(); i++ {
		e := l.at(i)
		p.line(e.Off(), depth)
		last := i == l.len()-1
		switch e.Op() {
		case OpFieldUnit:
			p.name(e.Name())
			p.str(",   ")
			p.done(strconv.AppendUint(p.tail(), e.Value(), 10))
			if !last {
				p.str(",")
			}
			p.str("  // at byte ")
			p.hex(bit/8, 2)
			if bit%8 != 0 {
				p.str(" bit ")
				p.done(strconv.AppendUint(p.tail(), bit%8, 10))
			}
			bit += e.Value()
		case OpFieldReserved:
			bit += e.Value()
			if bit%8 == 0 {
				p.str("Offset (")
				p.hex(bit/8, 2)
				p.str(")")
			} else {
				p.str(",   ")
				p.done(strconv.AppendUint(p.tail(), e.Value(), 10))
			}
			if !last {
				p.str(",")
			}
		case OpFieldAccess, OpFieldExtAccess:
			p.str("AccessAs (")
			p.enum(accessTypes, e.Value()&0x0F, 2)
			p.str(", ")
			p.hex((e.Value()>>8)&0xFF, 2)
			if e.Op() == OpFieldExtAccess {
				p.str(", ")
				p.hex(e.Value()>>16, 2)
			}
			p.str(")")
			if !last {
				p.str(",")
			}
		case OpFieldConnect:
			p.opOpen(e)
			if a := e.Arg(0); !a.IsZero() {
				p.expr(a, depth)
			}
			p.str(")")
			if !last {
				p.str(",")
			}
		}
		p.str("\n")
	}
}

// eisaID returns the EisaId string of a compressed EISA id, if v is one.
func eisaID(v uint64) (string, bool) {
	if v>>32 != 0 || v&0x80 != 0 {
		return "", false
	}
	c := uint32(v&0xFF)<<8 | uint32(v>>8&0xFF)
	var s [7]byte
	for i := 0; i < 3; i++ {
		ch := byte(c>>(10-5*i)&0x1F) + 0x40
		if ch < 'A' || ch > 'Z' {
			return "", false
		}
		s[i] = ch
	}
	const hexd = "0123456789ABCDEF"
	b2, b3 := byte(v>>16), byte(v>>24)
	s[3], s[4], s[5], s[6] = hexd[b2>>4], hexd[b2&0xF], hexd[b3>>4], hexd[b3&0xF]
	return string(s[:]), true
}

func isIDName(n RawName) bool {
	_, _, segs := splitName(n)
	if len(segs) < 4 {
		return false
	}
	s := string(segs[len(segs)-4:])
	return s == "_HID" || s == "_CID"
}

func (p *printer) integer(n Node) {
	switch n.Op() {
	case ZeroOp:
		p.str("Zero")
	case OneOp:
		p.str("One")
	case OnesOp:
		p.str("Ones")
	case BytePrefix:
		p.hex(n.Value(), 2)
	case WordPrefix:
		p.hex(n.Value(), 4)
	case DWordPrefix:
		p.hex(n.Value(), 8)
	default:
		p.hex(n.Value(), 16)
	}
}

func (p *printer) quote(s []byte) {
	p.str("\"")
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			p.done(append(p.tail(), '\\', c))
		case c >= 0x20 && c < 0x7F:
			p.done(append(p.tail(), c))
		default:
			p.str("\\x")
			p.done(appendHex(p.tail(), uint64(c), 2))
		}
	}
	p.str("\"")
}

// expr prints n inline (Packages and Buffers span several lines).
func (p *printer) expr(n Node, depth int) {
	switch n.Op() {
	case ZeroOp, OneOp, OnesOp, BytePrefix, WordPrefix, DWordPrefix, QWordPrefix:
		p.integer(n)
		return
	case StringPrefix:
		p.quote(n.Data())
		return
	case OpNamePath:
		p.name(n.Name())
		return
	case OpNullTarget:
		return
	case OpCall:
		p.name(n.Name())
		p.str(" (")
		p.args(n, depth)
		p.str(")")
		return
	case NameOp:
		p.opOpen(n)
		p.name(n.Name())
		p.str(", ")
		if v := n.Arg(0); !v.IsZero() {
			if v.Op() == DWordPrefix && isIDName(n.Name()) {
				if id, ok := eisaID(v.Value()); ok {
					p.str("EisaId (\"")
					p.str(id)
					p.str("\")")
					p.str(")")
					return
				}
			}
			p.expr(v, depth)
		}
		p.str(")")
		return
	case PackageOp, VarPackageOp:
		p.opOpen(n)
		if v, ok := n.Raw(0); ok {
			p.hex(v, 2)
		} else if a := n.Arg(0); !a.IsZero() {
			p.expr(a, depth)
		}
		p.str(")")
		p.str("\n")
		p.line(-1, depth)
		p.str("{")
		elems, mark := p.kids(n, false)
		for i := 0; i < elems.len(); i++ {
			e := elems.at(i)
			p.str("\n")
			p.line(e.Off(), depth+1)
			p.expr(e, depth+1)
			if i < elems.len()-1 {
				p.str(",")
			}
		}
		p.release(mark)
		p.str("\n")
		p.line(-1, depth)
		p.str("}")
		return
	case BufferOp:
		p.opOpen(n)
		if a := n.Arg(0); !a.IsZero() {
			p.expr(a, depth)
		}
		p.str(")\n")
		p.line(-1, depth)
		p.str("{")
		data := n.Data()
		dataOff := n.End() - len(data)
		for i, c := range data {
			if i%8 == 0 {
				p.str("\n")
				p.line(dataOff+i, depth+1)
			}
			p.hex(uint64(c), 2)
			if i < len(data)-1 {
				p.str(",")
				if i%8 != 7 {
					p.str(" ")
				}
			}
		}
		p.str("\n")
		p.line(-1, depth)
		p.str("}")
		return
	case MethodOp, ScopeOp, IfOp, ElseOp, WhileOp:
		// Blocks in an expression position: print them as statements.
		p.stmt(n, depth)
		return
	case LNotOp:
		if a := n.Arg(0); !a.IsZero() && a.Op() < 0x100 {
			if neg := lnotName(byte(a.Op())); neg != "" {
				p.str(neg)
				p.str(" (")
				p.args(a, depth)
				p.str(")")
				return
			}
		}
	case ExtendedOp(OpRegionOp):
		p.opOpen(n)
		p.name(n.Name())
		p.str(", ")
		if space, _ := n.Raw(0); space == 0x7F {
			p.str("FFixedHW")
		} else {
			p.enum(regionSpaces, space, 2)
		}
		l, mark := p.kids(n, true)
		for i := 0; i < l.len(); i++ {
			a := l.at(i)
			p.str(", ")
			p.expr(a, depth)
		}
		p.release(mark)
		p.str(")")
		return
	case ExternalOp:
		p.opOpen(n)
		p.name(n.Name())
		typ, _ := n.Raw(0)
		argc, _ := n.Raw(1)
		p.str(", ")
		p.enum(objectTypes, typ, 2)
		p.str(")")
		if typ == externalMethodObj {
			p.str("  // ")
			p.done(strconv.AppendUint(p.tail(), argc, 10))
			p.str(" Arguments")
		}
		return
	case MatchOp:
		p.opOpen(n)
		op1, _ := n.Raw(0)
		op2, _ := n.Raw(1)
		l, mark := p.kids(n, true)
		for i := 0; i < l.len(); i++ {
			a := l.at(i)
			if i > 0 {
				p.str(", ")
			}
			p.expr(a, depth)
			if i == 0 {
				p.str(", ")
				p.enum(matchOps, op1, 2)
			} else if i == 1 {
				p.str(", ")
				p.enum(matchOps, op2, 2)
			}
		}
		p.release(mark)
		p.str(")")
		return
	case Local0Op, Local0Op + 1, Local0Op + 2, Local0Op + 3, Local0Op + 4, Local0Op + 5, Local0Op + 6, Local0Op + 7,
		Arg0Op, Arg0Op + 1, Arg0Op + 2, Arg0Op + 3, Arg0Op + 4, Arg0Op + 5, Arg0Op + 6,
		ExtendedOp(DebugOp), ExtendedOp(RevisionOp), ExtendedOp(TimerOp), BreakOp, ContinueOp, NoopOp, BreakPointOp:
		p.str(n.Op().String())
		return
	}
	// Generic form: Operator (operands), with the defined name where the
	// grammar puts it, and trailing empty targets left out.
	sp := n.Op().spec()
	p.opOpen(n)
	if sp == nil {
		p.args(n, depth)
		p.str(")")
		return
	}
	// parts: -1 = the defined name, -2-k = raw operand k, i >= 0 = Args()[i].
	var partsBuf [8]int
	parts := partsBuf[:0]
	ai, ri := 0, 0
	for i := 0; i < len(sp.args); i++ {
		switch sp.args[i] {
		case aPkg, aTerms, aFields, aElems, aBytes:
		case aDefName:
			parts = append(parts, -1)
		case aByte, aWord, aDWord:
			parts = append(parts, -2-ri)
			ri++
		default:
			parts = append(parts, ai)
			ai++
		}
	}
	args, mark := p.kids(n, true)
	last := len(parts) - 1
	for last >= 0 && parts[last] >= 0 && parts[last] < args.len() && args.op(parts[last]) == OpNullTarget {
		last--
	}
	for i := 0; i <= last; i++ {
		if i > 0 {
			p.str(", ")
		}
		switch k := parts[i]; {
		case k == -1:
			p.name(n.Name())
		case k <= -2:
			v, _ := n.Raw(-2 - k)
			p.rawHex(n, -2-k, v)
		case k < args.len():
			p.expr(args.at(k), depth)
		}
	}
	p.release(mark)
	p.str(")")
}

// rawHex prints raw operand i of n in hex with as many digits as its size.
func (p *printer) rawHex(n Node, i int, v uint64) {
	size := 1
	if s := n.Op().spec(); s != nil {
		k := 0
		for j := 0; j < len(s.args); j++ {
			if sz := rawSize(s.args[j]); sz > 0 {
				if k == i {
					size = sz
					break
				}
				k++
			}
		}
	}
	p.hex(v, 2*size)
}

func (p *printer) args(n Node, depth int) {
	l, mark := p.kids(n, true)
	last := l.len() - 1
	for last >= 0 && l.op(last) == OpNullTarget {
		last--
	}
	for i := 0; i <= last; i++ {
		if i > 0 {
			p.str(", ")
		}
		p.expr(l.at(i), depth)
	}
	p.release(mark)
}

// String returns the ASL text of n (see Format).
func (n Node) String() string {
	var sb stringsBuilder
	_ = Format(&sb, n)
	return string(sb)
}

type stringsBuilder []byte

func (s *stringsBuilder) Write(b []byte) (int, error) { *s = append(*s, b...); return len(b), nil }
