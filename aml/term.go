package aml

import (
	"errors"
	"fmt"
	"math"
)

// ErrBadOperand: an operand of the wrong kind, e.g. a literal where the AML
// grammar requires a SuperName (a storable location) as the target.
var ErrBadOperand = errors.New("bad operand")

// ---------------------------------------------------------------------------
// Constants and integers

// ConstObj is one of the AML constant objects Zero, One and Ones.
type ConstObj byte

// The AML constant objects. Ones is all bits set at the interpreter's
// integer width (0xFFFFFFFF under a revision-1 DSDT, 2^64-1 otherwise).
const (
	Zero ConstObj = ZeroOp
	One  ConstObj = OneOp
	Ones ConstObj = OnesOp
)

// AppendAML appends the constant's opcode.
func (c ConstObj) AppendAML(b []byte) ([]byte, error) {
	switch c {
	case Zero, One, Ones:
		return append(b, byte(c)), nil
	}
	return b, newErr("ConstObj", "", fmt.Errorf("0x%02X is not Zero, One or Ones: %w", byte(c), ErrOutOfRange))
}

type intTerm uint64

// Int returns an integer constant encoded the way iasl encodes it (with
// integer optimization on): 0 as Zero, 1 as One, 2^64-1 as Ones, otherwise
// with the smallest of BytePrefix, WordPrefix, DWordPrefix and QWordPrefix
// that holds v. Note that 0xFFFFFFFF is a DWordPrefix constant (iasl only
// turns it into Ones in a revision-1 table).
func Int(v uint64) Term { return intTerm(v) }

// AppendAML appends the integer constant.
func (v intTerm) AppendAML(b []byte) ([]byte, error) { return appendInt(b, uint64(v)), nil }

func appendInt(b []byte, v uint64) []byte {
	switch {
	case v == 0:
		return append(b, ZeroOp)
	case v == 1:
		return append(b, OneOp)
	case v == math.MaxUint64:
		return append(b, OnesOp)
	case v <= 0xFF:
		return append(b, BytePrefix, byte(v))
	case v <= 0xFFFF:
		return append(b, WordPrefix, byte(v), byte(v>>8))
	case v <= 0xFFFFFFFF:
		return append(b, DWordPrefix, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
	}
	return append(b, QWordPrefix, byte(v), byte(v>>8), byte(v>>16), byte(v>>24),
		byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56))
}

// ---------------------------------------------------------------------------
// Strings, buffers, packages

type strTerm string

// Str returns a string constant. Every byte must be in 0x01-0x7F (AML
// strings are NUL-terminated ASCII).
func Str(s string) Term { return strTerm(s) }

// AppendAML appends StringPrefix, the characters and the NUL terminator.
func (s strTerm) AppendAML(b []byte) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] > 0x7F {
			return b, newErr(Op(StringPrefix).String(), "", fmt.Errorf("byte 0x%02X at offset %d: %w", s[i], i, ErrBadString))
		}
	}
	b = append(b, StringPrefix)
	b = append(b, s...)
	return append(b, 0), nil
}

type bufTerm struct {
	size  Term // BufferN's size; Buffer: len(data)
	sized bool // BufferN
	data  []byte
}

// Buffer returns a buffer object initialised with data; its size is
// len(data) (ASL "Buffer () {...}").
func Buffer(data []byte) Term { return &bufTerm{data: data} }

// BufferN returns a buffer of size bytes (any integer term: a constant, a
// Local, an Arg or a name) whose first bytes are init (ASL
// "Buffer (size) {init}"). A constant size smaller than len(init) is an
// encode error.
func BufferN(size Term, init []byte) Term {
	return &bufTerm{size: size, sized: true, data: init}
}

// AppendAML appends BufferOp, PkgLength, the size and the initial bytes.
func (t *bufTerm) AppendAML(b []byte) ([]byte, error) {
	b = append(b, BufferOp)
	b, at := openPkg(b)
	var err error
	if !t.sized {
		b = appendInt(b, uint64(len(t.data)))
	} else {
		if t.size == nil {
			return b, newErr(Op(BufferOp).String(), "", fmt.Errorf("size: %w", ErrNilTerm))
		}
		if n, ok := t.size.(intTerm); ok && uint64(n) < uint64(len(t.data)) {
			return b, newErr(Op(BufferOp).String(), "", fmt.Errorf("size %d is smaller than the %d initial bytes: %w", uint64(n), len(t.data), ErrTooLong))
		}
		if b, err = t.size.AppendAML(b); err != nil {
			return b, err
		}
	}
	b = append(b, t.data...)
	b, err = closePkg(b, at)
	if err != nil {
		return b, newErr(Op(BufferOp).String(), "", err)
	}
	return b, nil
}

type pkgTerm struct {
	count int  // NumElements for Package (-1: len(elems))
	vari  bool // VarPackage
	n     Term // VarNumElements for VarPackage
	elems []Term
	inl   [inlineTerms]Term
}

// MaxPackageElements is the largest NumElements of a Package (one byte);
// larger packages need VarPackage.
const MaxPackageElements = 255

// Package returns a package of elems (ASL "Package () {...}"); at most 255.
// Elements are data objects (Int, Str, Buffer, Package) or names.
func Package(elems ...Term) Term {
	t := &pkgTerm{count: -1}
	t.elems = own(&t.inl, elems)
	return t
}

// PackageN returns a package of n elements, the first of which are elems
// (ASL "Package (n) {...}"); n must be in len(elems)..255.
func PackageN(n int, elems ...Term) Term {
	t := &pkgTerm{count: n}
	t.elems = own(&t.inl, elems)
	return t
}

// VarPackage returns a package whose element count is the term n (ASL
// "Package (n) {...}" with n > 255 or not a constant), initialised with elems.
func VarPackage(n Term, elems ...Term) Term {
	t := &pkgTerm{n: n, vari: true}
	t.elems = own(&t.inl, elems)
	return t
}

// AppendAML appends PackageOp/VarPackageOp, PkgLength, the count and the
// elements.
func (t *pkgTerm) AppendAML(b []byte) ([]byte, error) {
	construct := Op(PackageOp).String()
	if t.vari {
		construct = Op(VarPackageOp).String()
		b = append(b, VarPackageOp)
	} else {
		b = append(b, PackageOp)
	}
	b, at := openPkg(b)
	var err error
	if t.vari {
		if t.n == nil {
			return b, newErr(construct, "", fmt.Errorf("element count: %w", ErrNilTerm))
		}
		if b, err = t.n.AppendAML(b); err != nil {
			return b, err
		}
	} else {
		cnt := t.count
		if cnt < 0 {
			cnt = len(t.elems)
		}
		if len(t.elems) > MaxPackageElements || cnt > MaxPackageElements {
			return b, newErr(construct, "", fmt.Errorf("%d elements, at most %d (use VarPackage): %w", max(cnt, len(t.elems)), MaxPackageElements, ErrTooLong))
		}
		if cnt < len(t.elems) {
			return b, newErr(construct, "", fmt.Errorf("count %d is smaller than the %d initial elements: %w", cnt, len(t.elems), ErrOutOfRange))
		}
		b = append(b, byte(cnt))
	}
	for i, e := range t.elems {
		if e == nil {
			return b, newErr(construct, "", fmt.Errorf("element %d: %w", i, ErrNilTerm))
		}
		if !isDataObject(e, true) {
			return b, newErr(construct, "", fmt.Errorf("element %d is %T, not a data object or name: %w", i, e, ErrBadOperand))
		}
		if b, err = e.AppendAML(b); err != nil {
			return b, err
		}
	}
	if b, err = closePkg(b, at); err != nil {
		return b, newErr(construct, "", err)
	}
	return b, nil
}

// Raw returns a term that appends data unchanged. It is an escape hatch for
// constructs this package does not model (and for re-encoding bytes a
// decoder kept opaque); nothing in data is checked.
func Raw(data []byte) Term { return rawTerm(data) }

type rawTerm []byte

func (r rawTerm) AppendAML(b []byte) ([]byte, error) { return append(b, r...), nil }

// ---------------------------------------------------------------------------
// Locals, arguments and other argument-less objects

type localTerm int

// Local returns LocalN (n in 0..7; anything else is an encode error).
func Local(n int) Term { return localTerm(n) }

// AppendAML appends Local0Op+n.
func (l localTerm) AppendAML(b []byte) ([]byte, error) {
	if l < 0 || l > 7 {
		return b, newErr("Local", "", fmt.Errorf("index %d, want 0-7: %w", int(l), ErrOutOfRange))
	}
	return append(b, Local0Op+byte(l)), nil
}

type argTerm int

// Arg returns ArgN (n in 0..6; anything else is an encode error).
func Arg(n int) Term { return argTerm(n) }

// AppendAML appends Arg0Op+n.
func (a argTerm) AppendAML(b []byte) ([]byte, error) {
	if a < 0 || a > 6 {
		return b, newErr("Arg", "", fmt.Errorf("index %d, want 0-6: %w", int(a), ErrOutOfRange))
	}
	return append(b, Arg0Op+byte(a)), nil
}

// simpleOp is an operator encoded as a single opcode byte.
type simpleOp byte

func (o simpleOp) AppendAML(b []byte) ([]byte, error) { return append(b, byte(o)), nil }

// extOp is an operator encoded as ExtOpPrefix + one byte, without operands.
type extOp byte

func (o extOp) AppendAML(b []byte) ([]byte, error) { return append(b, ExtOpPrefix, byte(o)), nil }

// Break returns the Break statement (leave the innermost While).
func Break() Term { return simpleOp(BreakOp) }

// Continue returns the Continue statement.
func Continue() Term { return simpleOp(ContinueOp) }

// Noop returns the Noop statement.
func Noop() Term { return simpleOp(NoopOp) }

// BreakPoint returns the BreakPoint statement.
func BreakPoint() Term { return simpleOp(BreakPointOp) }

// Timer returns the Timer() expression: a monotonic count in 100 ns units
// (truncated to 32 bits under a revision-1 DSDT).
func Timer() Term { return extOp(TimerOp) }

// Revision returns the Revision expression (the interpreter's revision).
func Revision() Term { return extOp(RevisionOp) }

// Debug returns the Debug object (a store target that logs the value).
func Debug() Term { return extOp(DebugOp) }

// ---------------------------------------------------------------------------
// Operators with operands

// opTerm is an operator: 1-2 opcode bytes and up to 4 operands. Its ASL
// name (for errors) and the kind of each operand (a Target may be nil, a
// SuperName may not be a literal) come from the opcode table row of its
// opcode, which keeps the node small.
type opTerm struct {
	args  [4]Term
	code  [2]byte
	ncode uint8
	nargs uint8
}

func newOp(op byte, args ...Term) *opTerm {
	t := &opTerm{code: [2]byte{op}, ncode: 1}
	t.nargs = uint8(copy(t.args[:], args))
	return t
}

func newExtOp(op byte, args ...Term) *opTerm {
	t := &opTerm{code: [2]byte{ExtOpPrefix, op}, ncode: 2}
	t.nargs = uint8(copy(t.args[:], args))
	return t
}

// construct returns the ASL name of the operator (from the opcode table).
func (t *opTerm) construct() string { return opName(t.code, t.ncode) }

// isDataObject reports whether t may be the value of a Name or an element
// of a Package (a DataRefObject: constant, integer, string, buffer,
// package, Revision; in packages also a name). Raw terms are trusted.
func isDataObject(t Term, inPackage bool) bool {
	switch v := t.(type) {
	case ConstObj, intTerm, strTerm, *bufTerm, *pkgTerm, eisaTerm, rawTerm:
		return true
	case extOp:
		return v == RevisionOp
	case NameString:
		return inPackage
	}
	return false
}

// isLiteral reports whether t is a data literal (not a storable location).
func isLiteral(t Term) bool {
	switch t.(type) {
	case ConstObj, intTerm, strTerm, *bufTerm, *pkgTerm:
		return true
	}
	return false
}

// AppendAML appends the opcode(s) and the operands in order.
func (t *opTerm) AppendAML(b []byte) ([]byte, error) {
	return t.appendAML(b, "")
}

// appendAML encodes the operator; path names the object a CreateXField
// defines (for errors).
func (t *opTerm) appendAML(b []byte, path string) ([]byte, error) {
	b = append(b, t.code[:t.ncode]...)
	sp := codeSpec(t.code, t.ncode)
	var err error
	for i := 0; i < int(t.nargs); i++ {
		a := t.args[i]
		if a == nil {
			if sp.nullable&(1<<i) != 0 {
				b = append(b, NullName)
				continue
			}
			return b, newErr(t.construct(), path, fmt.Errorf("operand %d: %w", i+1, ErrNilTerm))
		}
		if sp.super&(1<<i) != 0 && isLiteral(a) {
			return b, newErr(t.construct(), path, fmt.Errorf("operand %d must be a name, Local, Arg, Debug or reference, not a constant: %w", i+1, ErrBadOperand))
		}
		if b, err = a.AppendAML(b); err != nil {
			return b, err
		}
	}
	return b, nil
}

// namedOpTerm is an operator followed by the NameString it defines
// (CreateXField).
type namedOpTerm struct {
	opTerm
	name string
}

// AppendAML appends the operator, its operands and the name.
func (t *namedOpTerm) AppendAML(b []byte) ([]byte, error) {
	b, err := t.appendAML(b, t.name)
	if err != nil {
		return b, err
	}
	return appendName(b, t.name, t.construct())
}

// acquireTerm is Acquire: the operator, the mutex and a timeout word.
type acquireTerm struct {
	opTerm
	timeout uint16
}

// AppendAML appends ExtOp AcquireOp Mutex Timeout.
func (t *acquireTerm) AppendAML(b []byte) ([]byte, error) {
	b, err := t.appendAML(b, "")
	if err != nil {
		return b, err
	}
	return append(b, byte(t.timeout), byte(t.timeout>>8)), nil
}

// binary builds "Op(a, b, target)" where target may be nil (NullName).
func binary(op byte, a, b, target Term) Term {
	return newOp(op, a, b, target)
}

// Store returns Store(src, dst): dst is a name, Local, Arg, Debug or a
// reference expression (Index, DerefOf, RefOf).
func Store(src, dst Term) Term {
	return newOp(StoreOp, src, dst)
}

// CopyObject returns CopyObject(src, dst).
func CopyObject(src, dst Term) Term {
	return newOp(CopyObjectOp, src, dst)
}

// Add returns Add(a, b, target); a nil target discards the result (NullName).
func Add(a, b, target Term) Term { return binary(AddOp, a, b, target) }

// Subtract returns Subtract(a, b, target).
func Subtract(a, b, target Term) Term { return binary(SubtractOp, a, b, target) }

// Multiply returns Multiply(a, b, target).
func Multiply(a, b, target Term) Term { return binary(MultiplyOp, a, b, target) }

// Mod returns Mod(a, b, target).
func Mod(a, b, target Term) Term { return binary(ModOp, a, b, target) }

// And returns And(a, b, target).
func And(a, b, target Term) Term { return binary(AndOp, a, b, target) }

// Or returns Or(a, b, target).
func Or(a, b, target Term) Term { return binary(OrOp, a, b, target) }

// Xor returns Xor(a, b, target).
func Xor(a, b, target Term) Term { return binary(XorOp, a, b, target) }

// Nand returns NAnd(a, b, target).
func Nand(a, b, target Term) Term { return binary(NandOp, a, b, target) }

// Nor returns NOr(a, b, target).
func Nor(a, b, target Term) Term { return binary(NorOp, a, b, target) }

// ShiftLeft returns ShiftLeft(a, count, target).
func ShiftLeft(a, count, target Term) Term { return binary(ShiftLeftOp, a, count, target) }

// ShiftRight returns ShiftRight(a, count, target).
func ShiftRight(a, count, target Term) Term {
	return binary(ShiftRightOp, a, count, target)
}

// Concatenate returns Concatenate(a, b, target).
func Concatenate(a, b, target Term) Term { return binary(ConcatOp, a, b, target) }

// Index returns Index(src, idx, target): a reference to element idx of a
// package, buffer or string; target may be nil.
func Index(src, idx, target Term) Term { return binary(IndexOp, src, idx, target) }

// Divide returns Divide(dividend, divisor, remainder, quotient); remainder
// and quotient may be nil.
func Divide(dividend, divisor, remainder, quotient Term) Term {
	return newOp(DivideOp, dividend, divisor, remainder, quotient)
}

// unaryTarget builds "Op(a, target)" with an optional target.
func unaryTarget(op byte, a, target Term) Term {
	return newOp(op, a, target)
}

// Not returns Not(a, target) (bitwise complement).
func Not(a, target Term) Term { return unaryTarget(NotOp, a, target) }

// FindSetLeftBit returns FindSetLeftBit(a, target).
func FindSetLeftBit(a, target Term) Term {
	return unaryTarget(FindSetLeftBitOp, a, target)
}

// FindSetRightBit returns FindSetRightBit(a, target).
func FindSetRightBit(a, target Term) Term {
	return unaryTarget(FindSetRightBitOp, a, target)
}

// ToInteger returns ToInteger(a, target).
func ToInteger(a, target Term) Term { return unaryTarget(ToIntegerOp, a, target) }

// ToBuffer returns ToBuffer(a, target).
func ToBuffer(a, target Term) Term { return unaryTarget(ToBufferOp, a, target) }

// ToHexString returns ToHexString(a, target).
func ToHexString(a, target Term) Term { return unaryTarget(ToHexStringOp, a, target) }

// ToDecimalString returns ToDecimalString(a, target).
func ToDecimalString(a, target Term) Term {
	return unaryTarget(ToDecimalStringOp, a, target)
}

// Mid returns Mid(src, index, length, target): length bytes or characters
// of src from index.
func Mid(src, index, length, target Term) Term {
	return newOp(MidOp, src, index, length, target)
}

// ToString returns ToString(src, length, target): the buffer src as a
// string of at most length characters (Ones: up to the first NUL).
func ToString(src, length, target Term) Term {
	return newOp(ToStringOp, src, length, target)
}

// Fatal returns Fatal(type, code, arg): a fatal error report to the OS.
func Fatal(typ byte, code uint32, arg Term) Term {
	return &fatalTerm{typ: typ, code: code, arg: arg}
}

type fatalTerm struct {
	typ  byte
	code uint32
	arg  Term
}

// AppendAML appends ExtOp FatalOp FatalType FatalCode FatalArg.
func (f *fatalTerm) AppendAML(b []byte) ([]byte, error) {
	b = append(b, ExtOpPrefix, FatalOp, f.typ, byte(f.code), byte(f.code>>8), byte(f.code>>16), byte(f.code>>24))
	return appendArg(b, f.arg, ExtendedOp(FatalOp).String(), "", "argument")
}

// MatchOperator is a comparison of Match.
type MatchOperator byte

// Match comparisons (ACPI 6.5 section 19.6.81).
const (
	MTR MatchOperator = 0 // always true
	MEQ MatchOperator = 1 // equal
	MLE MatchOperator = 2 // less or equal
	MLT MatchOperator = 3 // less
	MGE MatchOperator = 4 // greater or equal
	MGT MatchOperator = 5 // greater
)

type matchTerm struct {
	pkg        Term
	op1, op2   MatchOperator
	obj1, obj2 Term
	start      Term
}

// Match returns Match(pkg, op1, obj1, op2, obj2, start): the index of the
// first element from start that satisfies both comparisons, or Ones.
func Match(pkg Term, op1 MatchOperator, obj1 Term, op2 MatchOperator, obj2 Term, start Term) Term {
	return &matchTerm{pkg: pkg, op1: op1, obj1: obj1, op2: op2, obj2: obj2, start: start}
}

// AppendAML appends MatchOp SearchPkg Op1 Obj1 Op2 Obj2 StartIndex.
func (m *matchTerm) AppendAML(b []byte) ([]byte, error) {
	if m.op1 > MGT || m.op2 > MGT {
		return b, newErr(Op(MatchOp).String(), "", fmt.Errorf("match operator %d/%d, want 0-5: %w", m.op1, m.op2, ErrOutOfRange))
	}
	b = append(b, MatchOp)
	b, err := appendArg(b, m.pkg, Op(MatchOp).String(), "", "package")
	if err != nil {
		return b, err
	}
	b = append(b, byte(m.op1))
	if b, err = appendArg(b, m.obj1, Op(MatchOp).String(), "", "operand 1"); err != nil {
		return b, err
	}
	b = append(b, byte(m.op2))
	if b, err = appendArg(b, m.obj2, Op(MatchOp).String(), "", "operand 2"); err != nil {
		return b, err
	}
	return appendArg(b, m.start, Op(MatchOp).String(), "", "start index")
}

// Increment returns Increment(t) (t is a name, Local or Arg).
func Increment(t Term) Term {
	return newOp(IncrementOp, t)
}

// Decrement returns Decrement(t).
func Decrement(t Term) Term {
	return newOp(DecrementOp, t)
}

// DerefOf returns DerefOf(x).
func DerefOf(x Term) Term { return newOp(DerefOfOp, x) }

// RefOf returns RefOf(x).
func RefOf(x Term) Term {
	return newOp(RefOfOp, x)
}

// CondRefOf returns CondRefOf(x, target): true when x exists.
func CondRefOf(x, target Term) Term {
	return newExtOp(CondRefOfOp, x, target)
}

// SizeOf returns SizeOf(x).
func SizeOf(x Term) Term {
	return newOp(SizeOfOp, x)
}

// ObjectTypeOf returns ObjectType(x) (the function is named ObjectTypeOf
// because ObjectType is the type of External declarations).
func ObjectTypeOf(x Term) Term {
	return newOp(ObjectTypeOp, x)
}

// LAnd returns LAnd(a, b).
func LAnd(a, b Term) Term { return newOp(LAndOp, a, b) }

// LOr returns LOr(a, b).
func LOr(a, b Term) Term { return newOp(LOrOp, a, b) }

// LNot returns LNot(a).
func LNot(a Term) Term { return newOp(LNotOp, a) }

// LEqual returns LEqual(a, b).
func LEqual(a, b Term) Term { return newOp(LEqualOp, a, b) }

// LGreater returns LGreater(a, b).
func LGreater(a, b Term) Term { return newOp(LGreaterOp, a, b) }

// LLess returns LLess(a, b).
func LLess(a, b Term) Term { return newOp(LLessOp, a, b) }

// lnot2 encodes the composite comparisons the way iasl does: LNot + op.
func lnot2(op byte, a, b Term) Term {
	t := newOp(LNotOp, a, b)
	t.code[1] = op
	t.ncode = 2
	return t
}

// LNotEqual returns LNotEqual(a, b), encoded as LNot(LEqual(a, b)).
func LNotEqual(a, b Term) Term { return lnot2(LEqualOp, a, b) }

// LLessEqual returns LLessEqual(a, b), encoded as LNot(LGreater(a, b)).
func LLessEqual(a, b Term) Term { return lnot2(LGreaterOp, a, b) }

// LGreaterEqual returns LGreaterEqual(a, b), encoded as LNot(LLess(a, b)).
func LGreaterEqual(a, b Term) Term { return lnot2(LLessOp, a, b) }

// Notify returns Notify(obj, value).
func Notify(obj, value Term) Term {
	return newOp(NotifyOp, obj, value)
}

// Return returns Return(v).
func Return(v Term) Term { return newOp(ReturnOp, v) }

// Sleep returns Sleep(ms).
func Sleep(ms Term) Term { return newExtOp(SleepOp, ms) }

// Stall returns Stall(us).
func Stall(us Term) Term { return newExtOp(StallOp, us) }

// Acquire returns Acquire(mutex, timeout) (timeout in ms, 0xFFFF = forever).
func Acquire(mutex Term, timeout uint16) Term {
	t := &acquireTerm{opTerm: opTerm{code: [2]byte{ExtOpPrefix, AcquireOp}, ncode: 2, nargs: 1}, timeout: timeout}
	t.args[0] = mutex
	return t
}

// Release returns Release(mutex).
func Release(mutex Term) Term {
	return newExtOp(ReleaseOp, mutex)
}

// Signal returns Signal(event).
func Signal(event Term) Term {
	return newExtOp(SignalOp, event)
}

// Reset returns Reset(event).
func Reset(event Term) Term {
	return newExtOp(ResetOp, event)
}

// Wait returns Wait(event, timeout).
func Wait(event, timeout Term) Term {
	return newExtOp(WaitOp, event, timeout)
}

// createField builds CreateXField(src, index, name).
func createField(op byte, src, index Term, name string) Term {
	t := &namedOpTerm{opTerm: opTerm{code: [2]byte{op}, ncode: 1, nargs: 2}, name: name}
	t.args[0], t.args[1] = src, index
	if name == "" {
		t.name = "\x00" // rejected by appendName with a clear error
	}
	return t
}

// CreateDWordField returns CreateDWordField(src, byteIndex, name).
func CreateDWordField(src, byteIndex Term, name string) Term {
	return createField(CreateDWordFieldOp, src, byteIndex, name)
}

// CreateWordField returns CreateWordField(src, byteIndex, name).
func CreateWordField(src, byteIndex Term, name string) Term {
	return createField(CreateWordFieldOp, src, byteIndex, name)
}

// CreateByteField returns CreateByteField(src, byteIndex, name).
func CreateByteField(src, byteIndex Term, name string) Term {
	return createField(CreateByteFieldOp, src, byteIndex, name)
}

// CreateQWordField returns CreateQWordField(src, byteIndex, name).
func CreateQWordField(src, byteIndex Term, name string) Term {
	return createField(CreateQWordFieldOp, src, byteIndex, name)
}

// CreateBitField returns CreateBitField(src, bitIndex, name).
func CreateBitField(src, bitIndex Term, name string) Term {
	return createField(CreateBitFieldOp, src, bitIndex, name)
}

// CreateField returns CreateField(src, bitIndex, numBits, name).
func CreateField(src, bitIndex, numBits Term, name string) Term {
	t := &namedOpTerm{opTerm: opTerm{code: [2]byte{ExtOpPrefix, CreateFieldOp}, ncode: 2, nargs: 3}, name: name}
	t.args[0], t.args[1], t.args[2] = src, bitIndex, numBits
	if name == "" {
		t.name = "\x00"
	}
	return t
}

// MaxArgs is the largest number of arguments of a method.
const MaxArgs = 7

type callTerm struct {
	path string
	args []Term
	inl  [inlineTerms]Term
}

// Call returns the invocation of the method path with args (at most 7), e.g.
// Call("\\_OSI", Str("Linux")). The callee's argument count is not known to
// the encoder; the AML loader checks it.
func Call(path string, args ...Term) Term {
	c := &callTerm{path: path}
	c.args = own(&c.inl, args)
	return c
}

// AppendAML appends the method's name and its arguments.
func (c *callTerm) AppendAML(b []byte) ([]byte, error) {
	if len(c.args) > MaxArgs {
		return b, newErr(OpCall.String(), c.path, fmt.Errorf("%d arguments, at most %d: %w", len(c.args), MaxArgs, ErrOutOfRange))
	}
	b, err := appendName(b, c.path, OpCall.String())
	if err != nil {
		return b, err
	}
	for i, a := range c.args {
		if a == nil {
			return b, newErr(OpCall.String(), c.path, fmt.Errorf("argument %d: %w", i, ErrNilTerm))
		}
		if b, err = a.AppendAML(b); err != nil {
			return b, err
		}
	}
	return b, nil
}

// ---------------------------------------------------------------------------
// Control flow

// IfTerm is an If statement, optionally followed by an Else.
type IfTerm struct {
	pred    Term
	body    []Term
	els     []Term
	hasElse bool
	inl     [inlineTerms]Term
	elsInl  [1]Term
}

// If returns If(pred) {terms}. Call Else on the result to add an Else
// branch; an Else whose only term is another If is an ElseIf.
func If(pred Term, terms ...Term) *IfTerm {
	t := &IfTerm{pred: pred}
	t.body = own(&t.inl, terms)
	return t
}

// Else adds the Else branch to the If and returns it.
func (t *IfTerm) Else(terms ...Term) Term {
	if len(terms) == 1 {
		t.elsInl[0] = terms[0]
		t.els = t.elsInl[:]
	} else {
		t.els = append([]Term(nil), terms...)
	}
	t.hasElse = true
	return t
}

// ElseIf adds "Else { If (pred) {terms} }" and returns the inner If, on which
// Else/ElseIf may be called again.
func (t *IfTerm) ElseIf(pred Term, terms ...Term) *IfTerm {
	inner := If(pred, terms...)
	t.elsInl[0] = inner
	t.els = t.elsInl[:]
	t.hasElse = true
	return inner
}

// AppendAML appends IfOp PkgLength Predicate TermList, then the Else.
func (t *IfTerm) AppendAML(b []byte) ([]byte, error) {
	b = append(b, IfOp)
	b, at := openPkg(b)
	b, err := appendArg(b, t.pred, Op(IfOp).String(), "", "predicate")
	if err != nil {
		return b, err
	}
	if b, err = appendTerms(b, t.body); err != nil {
		return b, err
	}
	if b, err = closePkg(b, at); err != nil {
		return b, newErr(Op(IfOp).String(), "", err)
	}
	if !t.hasElse {
		return b, nil
	}
	b = append(b, ElseOp)
	b, at = openPkg(b)
	if b, err = appendTerms(b, t.els); err != nil {
		return b, err
	}
	if b, err = closePkg(b, at); err != nil {
		return b, newErr(Op(ElseOp).String(), "", err)
	}
	return b, nil
}

type whileTerm struct {
	pred Term
	body []Term
	inl  [inlineTerms]Term
}

// While returns While(pred) {terms}.
func While(pred Term, terms ...Term) Term {
	t := &whileTerm{pred: pred}
	t.body = own(&t.inl, terms)
	return t
}

// AppendAML appends WhileOp PkgLength Predicate TermList.
func (t *whileTerm) AppendAML(b []byte) ([]byte, error) {
	b = append(b, WhileOp)
	b, at := openPkg(b)
	b, err := appendArg(b, t.pred, Op(WhileOp).String(), "", "predicate")
	if err != nil {
		return b, err
	}
	if b, err = appendTerms(b, t.body); err != nil {
		return b, err
	}
	if b, err = closePkg(b, at); err != nil {
		return b, newErr(Op(WhileOp).String(), "", err)
	}
	return b, nil
}

// ---------------------------------------------------------------------------
// EISA ids

type eisaTerm string

// EISAID returns the integer of a compressed EISA id such as "PNP0A03" or
// "QEM0001" (ASL EisaId): three letters A-Z and four upper-case hex digits.
// It is encoded like Int of that value (iasl applies the same integer
// optimization).
func EISAID(id string) Term { return eisaTerm(id) }

// EISAIDValue returns the 32-bit value of a compressed EISA id.
// A malformed id is an *EncodeError (Construct "EisaId").
func EISAIDValue(id string) (uint32, error) {
	v, err := eisaIDValue(id)
	if err != nil {
		return 0, newErr("EisaId", id, err)
	}
	return v, nil
}

func eisaIDValue(id string) (uint32, error) {
	if len(id) != 7 {
		return 0, fmt.Errorf("EISA id %q is %d characters long, want 7 (3 letters, 4 hex digits): %w", id, len(id), ErrBadString)
	}
	var v uint32
	for i := 0; i < 3; i++ {
		c := id[i]
		if c < 'A' || c > 'Z' {
			return 0, fmt.Errorf("EISA id %q: character %q at offset %d is not A-Z: %w", id, c, i, ErrBadString)
		}
		v = v<<5 | uint32(c-'A'+1)
	}
	for i := 3; i < 7; i++ {
		c := id[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, fmt.Errorf("EISA id %q: character %q at offset %d is not 0-9 or A-F: %w", id, c, i, ErrBadString)
		}
		v = v<<4 | uint32(d)
	}
	// The id is stored big-endian in a little-endian integer.
	return v<<24 | v>>24 | (v>>8)&0xFF00 | (v<<8)&0xFF0000, nil
}

// AppendAML appends the id's integer.
func (e eisaTerm) AppendAML(b []byte) ([]byte, error) {
	v, err := eisaIDValue(string(e))
	if err != nil {
		return b, newErr("EisaId", "", err)
	}
	return appendInt(b, uint64(v)), nil
}
