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
func Format(w io.Writer, n *Node) error { return FormatWith(w, n, FormatOptions{}) }

// FormatWith is Format with options.
func FormatWith(w io.Writer, n *Node, o FormatOptions) error {
	pr := &printer{w: w, o: o, buf: make([]byte, 0, 32<<10)}
	if n.Op == OpRoot {
		pr.terms(n.Children(), 0)
	} else {
		pr.terms([]*Node{n}, 0)
	}
	return pr.flush()
}

type printer struct {
	w   io.Writer
	o   FormatOptions
	buf []byte
	err error
}

func (p *printer) flush() error {
	if p.err == nil && len(p.buf) > 0 {
		_, p.err = p.w.Write(p.buf)
	}
	p.buf = p.buf[:0]
	return p.err
}

func (p *printer) str(s string) { p.buf = append(p.buf, s...) }

// line starts a new output line for the construct at offset off (-1: a
// line of its own, such as a brace, that gets no offset).
func (p *printer) line(off, depth int) {
	if len(p.buf) > 24<<10 {
		_ = p.flush()
	}
	if p.o.Offsets {
		if off < 0 {
			p.buf = append(p.buf, "             "...)
		} else {
			p.buf = append(p.buf, "/* 0x"...)
			p.buf = appendHex(p.buf, uint64(off+p.o.Base), 4)
			p.buf = append(p.buf, " */ "...)
		}
	}
	p.buf = append(p.buf, p.o.Indent...)
	for i := 0; i < depth; i++ {
		p.buf = append(p.buf, "    "...)
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
	p.buf = append(p.buf, "0x"...)
	p.buf = appendHex(p.buf, v, digits)
}

func isBlock(n *Node) bool {
	switch n.Op {
	case ScopeOp, MethodOp, IfOp, ElseOp, WhileOp, ExtendedOp(DeviceOp), ExtendedOp(ProcessorOp),
		ExtendedOp(PowerResOp), ExtendedOp(ThermalZoneOp), ExtendedOp(FieldOp), ExtendedOp(IndexFieldOp), ExtendedOp(BankFieldOp):
		return true
	}
	return false
}

func (p *printer) terms(list []*Node, depth int) {
	for i, n := range list {
		p.line(int(n.Off), depth)
		p.stmt(n, depth)
		p.str("\n")
		// A blank line after a block, as iasl does, unless an Else follows.
		if isBlock(n) && i+1 < len(list) && list[i+1].Op != ElseOp {
			p.str("\n")
		}
	}
}

func (p *printer) block(n *Node, depth int) {
	p.str("\n")
	p.line(-1, depth)
	p.str("{\n")
	if n.Op == ExtendedOp(FieldOp) || n.Op == ExtendedOp(IndexFieldOp) || n.Op == ExtendedOp(BankFieldOp) {
		p.fields(n.Children(), depth+1)
	} else {
		p.terms(n.Children(), depth+1)
	}
	p.line(-1, depth)
	p.str("}")
}

func (p *printer) name(n RawName) { p.buf = n.AppendASL(p.buf) }

func arg(n *Node, i int) *Node {
	if i < len(n.Args()) {
		return n.Args()[i]
	}
	return nil
}

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
func (p *printer) stmt(n *Node, depth int) {
	switch n.Op {
	case ScopeOp, ExtendedOp(DeviceOp), ExtendedOp(ThermalZoneOp):
		p.str(n.Op.String())
		p.str(" (")
		p.name(n.Name())
		p.str(")")
		p.block(n, depth)
	case MethodOp:
		flags, _ := n.Raw(0)
		p.str("Method (")
		p.name(n.Name())
		p.str(", ")
		p.buf = strconv.AppendUint(p.buf, flags&7, 10)
		if flags&8 != 0 {
			p.str(", Serialized")
		} else {
			p.str(", NotSerialized")
		}
		if flags>>4 != 0 {
			p.str(", ")
			p.buf = strconv.AppendUint(p.buf, flags>>4, 10)
		}
		p.str(")")
		p.block(n, depth)
	case ExtendedOp(ProcessorOp), ExtendedOp(PowerResOp):
		p.str(n.Op.String())
		p.str(" (")
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
		p.str(n.Op.String())
		p.str(" (")
		if a := arg(n, 0); a != nil {
			p.expr(a, depth)
		}
		p.str(")")
		p.block(n, depth)
	case ElseOp:
		// Else { If (...) {...} [Else {...}] } prints as ElseIf, as iasl does.
		if c := n.Children(); (len(c) == 1 && c[0].Op == IfOp) || (len(c) == 2 && c[0].Op == IfOp && c[1].Op == ElseOp) {
			p.str("ElseIf (")
			if a := arg(c[0], 0); a != nil {
				p.expr(a, depth)
			}
			p.str(")")
			p.block(c[0], depth)
			if len(c) == 2 {
				p.str("\n")
				p.line(int(c[1].Off), depth)
				p.stmt(c[1], depth)
			}
			return
		}
		p.str("Else")
		p.block(n, depth)
	case ExtendedOp(FieldOp), ExtendedOp(IndexFieldOp), ExtendedOp(BankFieldOp):
		p.str(n.Op.String())
		p.str(" (")
		for _, a := range n.Args() {
			p.expr(a, depth)
			p.str(", ")
		}
		flags, _ := n.Raw(0)
		p.fieldFlags(flags)
		p.str(")")
		p.block(n, depth)
	default:
		p.expr(n, depth)
	}
}

func (p *printer) fields(list []*Node, depth int) {
	var bit uint64
	for i, e := range list {
		p.line(int(e.Off), depth)
		last := i == len(list)-1
		switch e.Op {
		case OpFieldUnit:
			p.name(e.Name())
			p.str(",   ")
			p.buf = strconv.AppendUint(p.buf, e.Value, 10)
			if !last {
				p.str(",")
			}
			p.str("  // at byte ")
			p.hex(bit/8, 2)
			if bit%8 != 0 {
				p.str(" bit ")
				p.buf = strconv.AppendUint(p.buf, bit%8, 10)
			}
			bit += e.Value
		case OpFieldReserved:
			bit += e.Value
			if bit%8 == 0 {
				p.str("Offset (")
				p.hex(bit/8, 2)
				p.str(")")
			} else {
				p.str(",   ")
				p.buf = strconv.AppendUint(p.buf, e.Value, 10)
			}
			if !last {
				p.str(",")
			}
		case OpFieldAccess, OpFieldExtAccess:
			p.str("AccessAs (")
			p.enum(accessTypes, e.Value&0x0F, 2)
			p.str(", ")
			p.hex((e.Value>>8)&0xFF, 2)
			if e.Op == OpFieldExtAccess {
				p.str(", ")
				p.hex(e.Value>>16, 2)
			}
			p.str(")")
			if !last {
				p.str(",")
			}
		case OpFieldConnect:
			p.str("Connection (")
			if a := arg(e, 0); a != nil {
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

func (p *printer) integer(n *Node) {
	switch n.Op {
	case ZeroOp:
		p.str("Zero")
	case OneOp:
		p.str("One")
	case OnesOp:
		p.str("Ones")
	case BytePrefix:
		p.hex(n.Value, 2)
	case WordPrefix:
		p.hex(n.Value, 4)
	case DWordPrefix:
		p.hex(n.Value, 8)
	default:
		p.hex(n.Value, 16)
	}
}

func (p *printer) quote(s []byte) {
	p.str("\"")
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			p.buf = append(p.buf, '\\', c)
		case c >= 0x20 && c < 0x7F:
			p.buf = append(p.buf, c)
		default:
			p.str("\\x")
			p.buf = appendHex(p.buf, uint64(c), 2)
		}
	}
	p.str("\"")
}

// expr prints n inline (Packages and Buffers span several lines).
func (p *printer) expr(n *Node, depth int) {
	switch n.Op {
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
		p.args(n.Args(), depth)
		p.str(")")
		return
	case NameOp:
		p.str("Name (")
		p.name(n.Name())
		p.str(", ")
		if v := arg(n, 0); v != nil {
			if v.Op == DWordPrefix && isIDName(n.Name()) {
				if id, ok := eisaID(v.Value); ok {
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
		p.str(n.Op.String())
		p.str(" (")
		if v, ok := n.Raw(0); ok {
			p.hex(v, 2)
		} else if a := arg(n, 0); a != nil {
			p.expr(a, depth)
		}
		p.str(")")
		p.str("\n")
		p.line(-1, depth)
		p.str("{")
		for i, e := range n.Children() {
			p.str("\n")
			p.line(int(e.Off), depth+1)
			p.expr(e, depth+1)
			if i < len(n.Children())-1 {
				p.str(",")
			}
		}
		p.str("\n")
		p.line(-1, depth)
		p.str("}")
		return
	case BufferOp:
		p.str("Buffer (")
		if a := arg(n, 0); a != nil {
			p.expr(a, depth)
		}
		p.str(")\n")
		p.line(-1, depth)
		p.str("{")
		dataOff := int(n.Off+n.Len) - len(n.Data())
		for i, c := range n.Data() {
			if i%8 == 0 {
				p.str("\n")
				p.line(dataOff+i, depth+1)
			}
			p.hex(uint64(c), 2)
			if i < len(n.Data())-1 {
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
		if a := arg(n, 0); a != nil {
			neg := ""
			switch a.Op {
			case LEqualOp:
				neg = "LNotEqual"
			case LGreaterOp:
				neg = "LLessEqual"
			case LLessOp:
				neg = "LGreaterEqual"
			}
			if neg != "" {
				p.str(neg)
				p.str(" (")
				p.args(a.Args(), depth)
				p.str(")")
				return
			}
		}
	case ExtendedOp(OpRegionOp):
		p.str("OperationRegion (")
		p.name(n.Name())
		p.str(", ")
		if space, _ := n.Raw(0); space == 0x7F {
			p.str("FFixedHW")
		} else {
			p.enum(regionSpaces, space, 2)
		}
		for _, a := range n.Args() {
			p.str(", ")
			p.expr(a, depth)
		}
		p.str(")")
		return
	case ExternalOp:
		p.str("External (")
		p.name(n.Name())
		typ, _ := n.Raw(0)
		argc, _ := n.Raw(1)
		p.str(", ")
		p.enum(objectTypes, typ, 2)
		p.str(")")
		if typ == externalMethodObj {
			p.str("  // ")
			p.buf = strconv.AppendUint(p.buf, argc, 10)
			p.str(" Arguments")
		}
		return
	case MatchOp:
		p.str("Match (")
		op1, _ := n.Raw(0)
		op2, _ := n.Raw(1)
		for i, a := range n.Args() {
			if i > 0 {
				p.str(", ")
			}
			p.expr(a, depth)
			if i == 0 || i == 1 {
				p.str(", ")
				p.enum(matchOps, []uint64{op1, op2}[i], 2)
			}
		}
		p.str(")")
		return
	case Local0Op, Local0Op + 1, Local0Op + 2, Local0Op + 3, Local0Op + 4, Local0Op + 5, Local0Op + 6, Local0Op + 7,
		Arg0Op, Arg0Op + 1, Arg0Op + 2, Arg0Op + 3, Arg0Op + 4, Arg0Op + 5, Arg0Op + 6,
		ExtendedOp(DebugOp), ExtendedOp(RevisionOp), ExtendedOp(TimerOp), BreakOp, ContinueOp, NoopOp, BreakPointOp:
		p.str(n.Op.String())
		return
	}
	// Generic form: Operator (operands), with the defined name where the
	// grammar puts it, and trailing empty targets left out.
	sp := n.Op.spec()
	p.str(n.Op.String())
	p.str(" (")
	if sp == nil {
		p.args(n.Args(), depth)
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
	args := n.Args()
	last := len(parts) - 1
	for last >= 0 && parts[last] >= 0 && parts[last] < len(args) && args[parts[last]].Op == OpNullTarget {
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
		case k < len(args):
			p.expr(args[k], depth)
		}
	}
	p.str(")")
}

// rawHex prints raw operand i of n in hex with as many digits as its size.
func (p *printer) rawHex(n *Node, i int, v uint64) {
	size := 1
	if s := n.Op.spec(); s != nil {
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

func (p *printer) args(list []*Node, depth int) {
	last := len(list) - 1
	for last >= 0 && list[last].Op == OpNullTarget {
		last--
	}
	for i := 0; i <= last; i++ {
		if i > 0 {
			p.str(", ")
		}
		p.expr(list[i], depth)
	}
}

// String returns the ASL text of n (see Format).
func (n *Node) String() string {
	var sb stringsBuilder
	_ = Format(&sb, n)
	return string(sb)
}

type stringsBuilder []byte

func (s *stringsBuilder) Write(b []byte) (int, error) { *s = append(*s, b...); return len(b), nil }
