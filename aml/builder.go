package aml

import "fmt"

// ObjectType is the object type of an External declaration (the
// ObjectTypeKeyword of ASL, encoded as one byte).
type ObjectType byte

// Object types (ACPI 6.5 section 19.6.96, table "Object types").
const (
	UnknownObj     ObjectType = 0
	IntObj         ObjectType = 1
	StrObj         ObjectType = 2
	BuffObj        ObjectType = 3
	PkgObj         ObjectType = 4
	FieldUnitObj   ObjectType = 5
	DeviceObj      ObjectType = 6
	EventObj       ObjectType = 7
	MethodObj      ObjectType = 8
	MutexObj       ObjectType = 9
	OpRegionObj    ObjectType = 10
	PowerResObj    ObjectType = 11
	ProcessorObj   ObjectType = 12
	ThermalZoneObj ObjectType = 13
	BuffFieldObj   ObjectType = 14
	DDBHandleObj   ObjectType = 15
)

// RegionSpace is the address space of an OperationRegion.
type RegionSpace byte

// Region spaces (ACPI 6.5 section 19.6.100).
const (
	SystemMemory        RegionSpace = 0x00
	SystemIO            RegionSpace = 0x01
	PCIConfig           RegionSpace = 0x02
	EmbeddedControl     RegionSpace = 0x03
	SMBus               RegionSpace = 0x04
	SystemCMOS          RegionSpace = 0x05
	PCIBARTarget        RegionSpace = 0x06
	IPMI                RegionSpace = 0x07
	GeneralPurposeIO    RegionSpace = 0x08
	GenericSerialBus    RegionSpace = 0x09
	PCC                 RegionSpace = 0x0A
	PlatformRtMechanism RegionSpace = 0x0B
	FFixedHW            RegionSpace = 0x7F
)

// AccessType is the access width of a Field (bits 0-3 of FieldFlags).
type AccessType byte

// Access types.
const (
	AnyAcc    AccessType = 0
	ByteAcc   AccessType = 1
	WordAcc   AccessType = 2
	DWordAcc  AccessType = 3
	QWordAcc  AccessType = 4
	BufferAcc AccessType = 5
)

// UpdateRule says what a Field write does with the bits of the access
// width outside the field unit (bits 5-6 of FieldFlags).
type UpdateRule byte

// Update rules.
const (
	Preserve     UpdateRule = 0
	WriteAsOnes  UpdateRule = 1
	WriteAsZeros UpdateRule = 2
)

// ---------------------------------------------------------------------------
// Named containers: Scope, Device, ThermalZone, Method, PowerResource

type containerTerm struct {
	code  [2]byte
	ncode uint8
	path  string
	head  [6]byte // bytes after the name (method flags, power resource level/order, processor id/pblk)
	nhead uint8
	check error // argument error found by the constructor, reported at encode time
	terms []Term
	inl   [inlineTerms]Term
}

// AppendAML appends Op PkgLength NameString [head] TermList.
func (c *containerTerm) AppendAML(b []byte) ([]byte, error) {
	if c.check != nil {
		return b, newErr(c.construct(), c.path, c.check)
	}
	b = append(b, c.code[:c.ncode]...)
	b, at := openPkg(b)
	b, err := appendName(b, c.path, c.construct())
	if err != nil {
		return b, err
	}
	b = append(b, c.head[:c.nhead]...)
	if b, err = appendTerms(b, c.terms); err != nil {
		return b, within(err, c.path)
	}
	if b, err = closePkg(b, at); err != nil {
		return b, newErr(c.construct(), c.path, err)
	}
	return b, nil
}

// construct returns the ASL name of the container (from the opcode table).
func (c *containerTerm) construct() string { return opName(c.code, c.ncode) }

func newContainer(proto containerTerm, terms []Term) *containerTerm {
	c := new(containerTerm)
	*c = proto
	c.terms = own(&c.inl, terms)
	return c
}

// Scope returns Scope(path) {terms}.
func Scope(path string, terms ...Term) Term {
	return newContainer(containerTerm{code: [2]byte{ScopeOp}, ncode: 1, path: path}, terms)
}

// Device returns Device(path) {terms}.
func Device(path string, terms ...Term) Term {
	return newContainer(containerTerm{code: [2]byte{ExtOpPrefix, DeviceOp}, ncode: 2, path: path}, terms)
}

// ThermalZone returns ThermalZone(path) {terms}.
func ThermalZone(path string, terms ...Term) Term {
	return newContainer(containerTerm{code: [2]byte{ExtOpPrefix, ThermalZoneOp}, ncode: 2, path: path}, terms)
}

// PowerResource returns PowerResource(path, systemLevel, resourceOrder) {terms}.
func PowerResource(path string, systemLevel byte, resourceOrder uint16, terms ...Term) Term {
	return newContainer(containerTerm{code: [2]byte{ExtOpPrefix, PowerResOp}, ncode: 2, path: path,
		head: [6]byte{systemLevel, byte(resourceOrder), byte(resourceOrder >> 8)}, nhead: 3}, terms)
}

// Processor returns the (deprecated, still common in QEMU's DSDT)
// Processor(path, procID, pblkAddr, pblkLen) {terms}.
func Processor(path string, procID byte, pblkAddr uint32, pblkLen byte, terms ...Term) Term {
	return newContainer(containerTerm{code: [2]byte{ExtOpPrefix, ProcessorOp}, ncode: 2, path: path,
		head: [6]byte{procID, byte(pblkAddr), byte(pblkAddr >> 8), byte(pblkAddr >> 16), byte(pblkAddr >> 24), pblkLen}, nhead: 6}, terms)
}

// MaxSyncLevel is the largest method or mutex synchronization level.
const MaxSyncLevel = 15

// MethodFlags are the flags of a Method besides its argument count: its
// serialization and synchronization level, as in ASL "Method (_TMP, 0,
// Serialized)" or QEMU's aml_method(..., AML_SERIALIZED). Combine them with
// |, e.g. Serialized|SyncLevel(3). The zero value is NotSerialized at sync
// level 0.
type MethodFlags uint16

const (
	// NotSerialized: the method may be executed by several threads at once.
	NotSerialized MethodFlags = 0
	// Serialized: the interpreter runs one invocation at a time (an implicit
	// mutex at the method's sync level).
	Serialized MethodFlags = 1 << 3
)

// methodSyncShift is where SyncLevel stores its level in MethodFlags (bits
// 8-15, so that an out-of-range level is reported rather than truncated).
const methodSyncShift = 8

// SyncLevel returns the flag for a method's synchronization level (0-15;
// larger levels are an encode error).
func SyncLevel(level uint8) MethodFlags { return MethodFlags(level) << methodSyncShift }

// Level returns the synchronization level set by SyncLevel.
func (f MethodFlags) Level() int { return int(f >> methodSyncShift) }

// Method returns Method(path, nargs, flags) {terms}: nargs is 0-7, flags
// Serialized or NotSerialized, optionally | SyncLevel(n); other values are
// encode errors.
func Method(path string, nargs int, flags MethodFlags, terms ...Term) Term {
	c := newContainer(containerTerm{code: [2]byte{MethodOp}, ncode: 1, path: path, nhead: 1}, terms)
	switch {
	case nargs < 0 || nargs > MaxArgs:
		c.check = fmt.Errorf("argument count %d, want 0-%d: %w", nargs, MaxArgs, ErrOutOfRange)
	case flags.Level() > MaxSyncLevel:
		c.check = fmt.Errorf("sync level %d, want 0-%d: %w", flags.Level(), MaxSyncLevel, ErrOutOfRange)
	case flags&^(Serialized|0xFF<<methodSyncShift) != 0:
		c.check = fmt.Errorf("method flags %#x: unknown bits (use Serialized, NotSerialized, SyncLevel): %w", uint16(flags), ErrOutOfRange)
	}
	c.head[0] = byte(nargs&7) | byte(flags&Serialized) | byte(flags.Level()&15)<<4
	return c
}

// ---------------------------------------------------------------------------
// Other named objects

type nameTerm struct {
	path  string
	value Term
}

// Name returns Name(path, value): value is a data object (Zero/One/Ones,
// Int, EISAID, Str, Buffer, Package, Revision or Raw); anything else is an
// encode error.
func Name(path string, value Term) Term { return &nameTerm{path: path, value: value} }

// AppendAML appends NameOp NameString DataRefObject.
func (n *nameTerm) AppendAML(b []byte) ([]byte, error) {
	b = append(b, NameOp)
	b, err := appendName(b, n.path, Op(NameOp).String())
	if err != nil {
		return b, err
	}
	if n.value == nil {
		return b, newErr(Op(NameOp).String(), n.path, fmt.Errorf("value: %w", ErrNilTerm))
	}
	if !isDataObject(n.value, false) {
		return b, newErr(Op(NameOp).String(), n.path, fmt.Errorf("value is %T, not a data object (Int, Str, Buffer, Package, ...): %w", n.value, ErrBadOperand))
	}
	if b, err = n.value.AppendAML(b); err != nil {
		return b, within(err, n.path)
	}
	return b, nil
}

type externalTerm struct {
	path  string
	typ   ObjectType
	nargs int
}

// External returns External(path, type): a declaration of an object defined
// in another table. nargs is the argument count of a MethodObj (0-7) and
// must be 0 for other types.
func External(path string, t ObjectType, nargs int) Term {
	return &externalTerm{path: path, typ: t, nargs: nargs}
}

// AppendAML appends ExternalOp NameString ObjectType ArgumentCount.
func (e *externalTerm) AppendAML(b []byte) ([]byte, error) {
	if e.typ > DDBHandleObj {
		return b, newErr(Op(ExternalOp).String(), e.path, fmt.Errorf("object type %d, want 0-%d: %w", e.typ, DDBHandleObj, ErrOutOfRange))
	}
	if e.nargs < 0 || e.nargs > MaxArgs || (e.typ != MethodObj && e.nargs != 0) {
		return b, newErr(Op(ExternalOp).String(), e.path, fmt.Errorf("argument count %d for object type %d: %w", e.nargs, e.typ, ErrOutOfRange))
	}
	b = append(b, ExternalOp)
	b, err := appendName(b, e.path, Op(ExternalOp).String())
	if err != nil {
		return b, err
	}
	return append(b, byte(e.typ), byte(e.nargs)), nil
}

type opRegionTerm struct {
	path           string
	space          RegionSpace
	offset, length Term
}

// OperationRegion returns OperationRegion(path, space, offset, length).
// offset and length are any integer terms: constants (Int) or run-time
// values (Local, Arg, a name).
func OperationRegion(path string, space RegionSpace, offset, length Term) Term {
	return &opRegionTerm{path: path, space: space, offset: offset, length: length}
}

// AppendAML appends ExtOp OpRegionOp NameString RegionSpace Offset Length.
func (o *opRegionTerm) AppendAML(b []byte) ([]byte, error) {
	if o.space > PlatformRtMechanism && o.space < 0x80 && o.space != FFixedHW {
		return b, newErr(ExtendedOp(OpRegionOp).String(), o.path, fmt.Errorf("region space 0x%02X is reserved: %w", byte(o.space), ErrOutOfRange))
	}
	b = append(b, ExtOpPrefix, OpRegionOp)
	b, err := appendName(b, o.path, ExtendedOp(OpRegionOp).String())
	if err != nil {
		return b, err
	}
	b = append(b, byte(o.space))
	if b, err = appendArg(b, o.offset, ExtendedOp(OpRegionOp).String(), o.path, "offset"); err != nil {
		return b, err
	}
	return appendArg(b, o.length, ExtendedOp(OpRegionOp).String(), o.path, "length")
}

type mutexTerm struct {
	path  string
	level int
}

// Mutex returns Mutex(path, syncLevel) (syncLevel 0-15).
func Mutex(path string, syncLevel int) Term { return &mutexTerm{path: path, level: syncLevel} }

// AppendAML appends ExtOp MutexOp NameString SyncFlags.
func (m *mutexTerm) AppendAML(b []byte) ([]byte, error) {
	if m.level < 0 || m.level > MaxSyncLevel {
		return b, newErr(ExtendedOp(MutexOp).String(), m.path, fmt.Errorf("sync level %d, want 0-%d: %w", m.level, MaxSyncLevel, ErrOutOfRange))
	}
	b = append(b, ExtOpPrefix, MutexOp)
	b, err := appendName(b, m.path, ExtendedOp(MutexOp).String())
	if err != nil {
		return b, err
	}
	return append(b, byte(m.level)), nil
}

type eventTerm string

// Event returns Event(path).
func Event(path string) Term { return eventTerm(path) }

// AppendAML appends ExtOp EventOp NameString.
func (e eventTerm) AppendAML(b []byte) ([]byte, error) {
	return appendName(append(b, ExtOpPrefix, EventOp), string(e), ExtendedOp(EventOp).String())
}

type aliasTerm struct{ src, alias string }

// Alias returns Alias(src, alias).
func Alias(src, alias string) Term { return &aliasTerm{src: src, alias: alias} }

// AppendAML appends AliasOp NameString NameString.
func (a *aliasTerm) AppendAML(b []byte) ([]byte, error) {
	b, err := appendName(append(b, AliasOp), a.src, Op(AliasOp).String())
	if err != nil {
		return b, err
	}
	return appendName(b, a.alias, Op(AliasOp).String())
}

// ---------------------------------------------------------------------------
// Fields

type fieldKind uint8

const (
	fieldUnit fieldKind = iota + 1
	fieldReserved
	fieldOffset
	fieldAccess
)

// FieldElement is one element of a Field's list: a named unit, reserved
// bits, an Offset or an AccessAs. Build it with FieldUnit, Reserved, Offset
// or AccessAs; the zero value is invalid.
type FieldElement struct {
	kind   fieldKind
	name   string
	n      int // bits (unit, reserved) or byte offset
	access AccessType
	attrib byte
}

// FieldUnit is a named field unit of bits bits (1..MaxFieldWidth); name is a
// single NameSeg ("TICK", "AB" = "AB__").
func FieldUnit(name string, bits int) FieldElement {
	return FieldElement{kind: fieldUnit, name: name, n: bits}
}

// Reserved skips bits bits (ASL ", 8" with no name).
func Reserved(bits int) FieldElement { return FieldElement{kind: fieldReserved, n: bits} }

// Offset moves to byteOffset bytes from the start of the region. Like iasl,
// it is encoded as reserved bits up to there (nothing when already there);
// an offset before the current position is an encode error.
func Offset(byteOffset int) FieldElement { return FieldElement{kind: fieldOffset, n: byteOffset} }

// AccessAs changes the access type (and attribute byte) for the units that
// follow (ASL "AccessAs (ByteAcc, attrib)").
func AccessAs(access AccessType, attrib byte) FieldElement {
	return FieldElement{kind: fieldAccess, access: access, attrib: attrib}
}

type fieldTerm struct {
	op        byte
	region    string // Field, BankField: region; IndexField: index name
	second    string // IndexField: data name; BankField: bank name
	bankValue Term   // BankField
	flags     byte
	check     error
	elems     []FieldElement
}

// MaxFieldWidth is the largest width, in bits, of one field unit or reserved
// gap: the largest value iasl encodes in a PkgLength (2^28-1 minus the 4
// length bytes, the thresholds of PkgLengthSize). A larger Offset() gap is
// encoded as several reserved elements (iasl refuses it).
const MaxFieldWidth = MaxPkgLength - 4

// maxFieldBits is the largest bit offset a field list may reach (ACPICA keeps
// field bit offsets in 32 bits).
const maxFieldBits = 1<<32 - 1

// LockRule says whether a Field access acquires the global lock (bit 4 of
// FieldFlags): ASL Lock / NoLock, QEMU's AML_LOCK / AML_NOLOCK.
type LockRule byte

// Lock rules.
const (
	NoLock LockRule = 0
	Lock   LockRule = 1
)

// Field returns Field(region, access, lock, update) {elems}: named units over
// an OperationRegion.
func Field(region string, access AccessType, lock LockRule, update UpdateRule, elems ...FieldElement) Term {
	return newField(FieldOp, region, "", nil, access, lock, update, elems)
}

// IndexField returns IndexField(index, data, access, lock, update) {elems}:
// units reached by writing their offset to the field unit index and
// accessing the field unit data.
func IndexField(index, data string, access AccessType, lock LockRule, update UpdateRule, elems ...FieldElement) Term {
	return newField(IndexFieldOp, index, data, nil, access, lock, update, elems)
}

// BankField returns BankField(region, bank, bankValue, access, lock, update)
// {elems}: units of region visible when bankValue is written to the field
// unit bank.
func BankField(region, bank string, bankValue Term, access AccessType, lock LockRule, update UpdateRule, elems ...FieldElement) Term {
	f := newField(BankFieldOp, region, bank, bankValue, access, lock, update, elems)
	if bankValue == nil && f.check == nil {
		f.check = fmt.Errorf("bank value: %w", ErrNilTerm)
	}
	return f
}

func newField(op byte, region, second string, bankValue Term, access AccessType, lock LockRule, update UpdateRule, elems []FieldElement) *fieldTerm {
	f := &fieldTerm{op: op, region: region, second: second, bankValue: bankValue,
		elems: append([]FieldElement(nil), elems...)}
	switch {
	case access > BufferAcc:
		f.check = fmt.Errorf("access type %d, want 0-%d: %w", access, BufferAcc, ErrOutOfRange)
	case update > WriteAsZeros:
		f.check = fmt.Errorf("update rule %d, want 0-2: %w", update, ErrOutOfRange)
	case lock > Lock:
		f.check = fmt.Errorf("lock rule %d, want NoLock (0) or Lock (1): %w", lock, ErrOutOfRange)
	}
	f.flags = byte(access) | byte(lock&1)<<4 | byte(update)<<5
	return f
}

// construct returns the ASL name of the field list (from the opcode table).
func (f *fieldTerm) construct() string { return ExtendedOp(f.op).String() }

// AppendAML appends ExtOp FieldOp|IndexFieldOp|BankFieldOp PkgLength, the
// name(s) (and bank value), FieldFlags and the FieldList.
func (f *fieldTerm) AppendAML(b []byte) ([]byte, error) {
	if f.check != nil {
		return b, newErr(f.construct(), f.region, f.check)
	}
	b = append(b, ExtOpPrefix, f.op)
	b, at := openPkg(b)
	b, err := appendName(b, f.region, f.construct())
	if err != nil {
		return b, err
	}
	if f.op != FieldOp {
		if b, err = appendName(b, f.second, f.construct()); err != nil {
			return b, err
		}
	}
	if f.op == BankFieldOp {
		if b, err = f.bankValue.AppendAML(b); err != nil {
			return b, within(err, f.region)
		}
	}
	b = append(b, f.flags)
	var pos int64 // current bit offset
	for i, e := range f.elems {
		bad := func(format string, args ...any) error {
			return newErr(f.construct(), f.region, fmt.Errorf("element %d: "+format, append([]any{i}, args...)...))
		}
		switch e.kind {
		case fieldUnit, fieldReserved:
			if e.n <= 0 || e.n > MaxFieldWidth {
				return b, bad("width %d bits, want 1-%d: %w", e.n, MaxFieldWidth, ErrOutOfRange)
			}
			if pos+int64(e.n) > maxFieldBits {
				return b, bad("unit ends at bit %d, beyond the 32-bit bit offset space: %w", pos+int64(e.n), ErrFieldOffset)
			}
			if e.kind == fieldUnit {
				if b, err = appendNameSeg(b, e.name, f.construct()); err != nil {
					return b, within(err, f.region)
				}
			} else {
				b = append(b, 0x00)
			}
			if b, err = appendPkgLengthValue(b, e.n); err != nil {
				return b, bad("%w", err)
			}
			pos += int64(e.n)
		case fieldOffset:
			if e.n < 0 || int64(e.n) > maxFieldBits/8 {
				return b, bad("Offset(0x%X) out of range: %w", e.n, ErrFieldOffset)
			}
			target := int64(e.n) * 8
			if target < pos {
				return b, bad("Offset(0x%X) is before the current position (bit %d, byte 0x%X): %w", e.n, pos, pos/8, ErrFieldOffset)
			}
			for gap := target - pos; gap > 0; {
				n := min(gap, MaxFieldWidth)
				b = append(b, 0x00)
				if b, err = appendPkgLengthValue(b, int(n)); err != nil {
					return b, bad("%w", err)
				}
				gap -= n
			}
			pos = target
		case fieldAccess:
			if e.access > BufferAcc {
				return b, bad("access type %d, want 0-%d: %w", e.access, BufferAcc, ErrOutOfRange)
			}
			b = append(b, 0x01, byte(e.access), e.attrib)
		default:
			return b, bad("zero FieldElement (use FieldUnit, Reserved, Offset or AccessAs): %w", ErrBadOperand)
		}
	}
	if b, err = closePkg(b, at); err != nil {
		return b, newErr(f.construct(), f.region, err)
	}
	return b, nil
}
