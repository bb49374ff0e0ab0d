package aml

import (
	"fmt"
	"strings"
)

// Op identifies the kind of a decoded Node. For real AML opcodes it is the
// opcode byte (e.g. Op(StoreOp)), or 0x5B00 | second byte for extended
// opcodes (see ExtendedOp). Constructs without an opcode of their own
// (name references, method invocations, the raw data bytes of some
// operators, field list entries, the root) use the Op* pseudo opcodes,
// which are all >= 0xF000.
type Op uint16

// ExtendedOp returns the Op of the extended opcode ExtOpPrefix, b
// (e.g. ExtendedOp(DeviceOp)).
func ExtendedOp(b byte) Op { return Op(0x5B00 | uint16(b)) }

// IsExtended reports whether o is an extended (0x5B-prefixed) opcode.
func (o Op) IsExtended() bool { return o&0xFF00 == 0x5B00 }

// Pseudo opcodes of Nodes that have no AML opcode of their own.
const (
	// OpRoot is the Node returned by Decode: Children are the top-level terms.
	OpRoot Op = 0xF000 + iota
	// OpNamePath is a reference to a named object (Name holds the path).
	OpNamePath
	// OpCall is a method invocation: Name is the method, Args its arguments.
	OpCall
	// OpNullTarget is the NullName (0x00) in a Target position: no target.
	OpNullTarget
	// OpFieldUnit is a named field: Name is its 4-character segment, Value
	// its width in bits, PkgBytes the width of its length encoding.
	OpFieldUnit
	// OpFieldReserved is a reserved field (ASL Offset() or ", bits"): Value
	// is its width in bits.
	OpFieldReserved
	// OpFieldAccess is an AccessAs entry: Value = AccessType | AccessAttrib<<8.
	OpFieldAccess
	// OpFieldExtAccess is an extended AccessAs entry:
	// Value = AccessType | AccessAttrib<<8 | AccessLength<<16.
	OpFieldExtAccess
	// OpFieldConnect is a Connection entry: Args[0] is a name reference
	// or a Buffer.
	OpFieldConnect
)

// argument kinds in opSpec.args
const (
	aPkg     = 'p' // PkgLength (first)
	aDefName = 'N' // NameString the construct defines -> Node.Name
	aRefName = 'n' // NameString referenced -> Args node OpNamePath
	aByte    = 'b'
	aWord    = 'w'
	aDWord   = 'd'
	aTermArg = 't'
	aDataRef = 'r' // DataRefObject: TermArg whose names are references
	aSuper   = 's' // SuperName
	aTarget  = 'T' // Target (SuperName or NullName)
	aTerms   = 'L' // TermList to the package end -> Children
	aFields  = 'F' // FieldList to the package end -> Children
	aElems   = 'E' // PackageElementList to the package end -> Children
	aBytes   = 'X' // byte list to the package end -> Data
)

// rawSize is the size of a raw data operand kind, 0 for other kinds.
func rawSize(kind byte) int {
	switch kind {
	case aByte:
		return 1
	case aWord:
		return 2
	case aDWord:
		return 4
	}
	return 0
}

// opSpec is one row of the opcode table: the ASL name of the operator
// (spelled as "iasl -dl" prints it) and its operand grammar. The encoder's
// error messages, the decoder and the printer all take operator names from
// this table.
type opSpec struct {
	name  string
	args  string
	scope bool // opens a namespace scope named by its NameString
	named bool // has a NameString it defines (set from args)
	// Derived from args, over the operands (n, t, r, s, T) in order; the
	// encoder checks its terms with them.
	operands uint8 // number of operands
	super    uint8 // bit i: operand i is a SuperName (no literal)
	nullable uint8 // bit i: operand i is a Target (nil encodes NullName)
}

// derive fills the fields of s that follow from s.args.
func (s *opSpec) derive() {
	s.named = strings.IndexByte(s.args, aDefName) >= 0
	for i := 0; i < len(s.args); i++ {
		switch s.args[i] {
		case aSuper:
			s.super |= 1 << s.operands
		case aTarget:
			s.super |= 1 << s.operands
			s.nullable |= 1 << s.operands
		case aRefName, aTermArg, aDataRef:
		default:
			continue
		}
		s.operands++
	}
}

// codeSpec returns the table row of the operator encoded as code[:n] (for
// LNot of a comparison: the comparison's row, whose operands it takes).
func codeSpec(code [2]byte, n uint8) *opSpec {
	switch {
	case n == 2 && code[0] == LNotOp:
		return &opTable[code[1]]
	case n == 2 && code[0] == ExtOpPrefix:
		return &extTable[code[1]]
	}
	return &opTable[code[0]]
}

var (
	opTable  [256]opSpec
	extTable [256]opSpec
)

// lnotNames are the ASL names of the composite comparisons that iasl
// encodes as LNot of another comparison (LNotOp followed by the opcode).
var lnotNames = [...]struct {
	op   byte
	name string
}{{LEqualOp, "LNotEqual"}, {LGreaterOp, "LLessEqual"}, {LLessOp, "LGreaterEqual"}}

// lnotName returns the ASL name of LNot(op (...)), or "" when that is not
// one of the composite comparisons.
func lnotName(op byte) string {
	for _, c := range lnotNames {
		if c.op == op {
			return c.name
		}
	}
	return ""
}

// opName returns the ASL name of the operator encoded as code[:n] (one
// opcode byte, ExtOpPrefix and a byte, or LNotOp and a comparison).
func opName(code [2]byte, n uint8) string {
	switch {
	case n == 2 && code[0] == LNotOp:
		if s := lnotName(code[1]); s != "" {
			return s
		}
	case n == 2 && code[0] == ExtOpPrefix:
		return ExtendedOp(code[1]).String()
	}
	return Op(code[0]).String()
}

func init() {
	one := map[byte]opSpec{
		ZeroOp: {name: "Zero"}, OneOp: {name: "One"}, OnesOp: {name: "Ones"},
		AliasOp:            {name: "Alias", args: "nN"},
		NameOp:             {name: "Name", args: "Nr"},
		BytePrefix:         {name: "BytePrefix"},
		WordPrefix:         {name: "WordPrefix"},
		DWordPrefix:        {name: "DWordPrefix"},
		QWordPrefix:        {name: "QWordPrefix"},
		StringPrefix:       {name: "String"},
		ScopeOp:            {name: "Scope", args: "pNL", scope: true},
		BufferOp:           {name: "Buffer", args: "ptX"},
		PackageOp:          {name: "Package", args: "pbE"},
		VarPackageOp:       {name: "VarPackage", args: "ptE"},
		MethodOp:           {name: "Method", args: "pNbL", scope: true},
		ExternalOp:         {name: "External", args: "Nbb"},
		StoreOp:            {name: "Store", args: "ts"},
		RefOfOp:            {name: "RefOf", args: "s"},
		AddOp:              {name: "Add", args: "ttT"},
		ConcatOp:           {name: "Concatenate", args: "ttT"},
		SubtractOp:         {name: "Subtract", args: "ttT"},
		IncrementOp:        {name: "Increment", args: "s"},
		DecrementOp:        {name: "Decrement", args: "s"},
		MultiplyOp:         {name: "Multiply", args: "ttT"},
		DivideOp:           {name: "Divide", args: "ttTT"},
		ShiftLeftOp:        {name: "ShiftLeft", args: "ttT"},
		ShiftRightOp:       {name: "ShiftRight", args: "ttT"},
		AndOp:              {name: "And", args: "ttT"},
		NandOp:             {name: "NAnd", args: "ttT"},
		OrOp:               {name: "Or", args: "ttT"},
		NorOp:              {name: "NOr", args: "ttT"},
		XorOp:              {name: "XOr", args: "ttT"},
		NotOp:              {name: "Not", args: "tT"},
		FindSetLeftBitOp:   {name: "FindSetLeftBit", args: "tT"},
		FindSetRightBitOp:  {name: "FindSetRightBit", args: "tT"},
		DerefOfOp:          {name: "DerefOf", args: "t"},
		ConcatResOp:        {name: "ConcatenateResTemplate", args: "ttT"},
		ModOp:              {name: "Mod", args: "ttT"},
		NotifyOp:           {name: "Notify", args: "st"},
		SizeOfOp:           {name: "SizeOf", args: "s"},
		IndexOp:            {name: "Index", args: "ttT"},
		MatchOp:            {name: "Match", args: "tbtbtt"},
		CreateDWordFieldOp: {name: "CreateDWordField", args: "ttN"},
		CreateWordFieldOp:  {name: "CreateWordField", args: "ttN"},
		CreateByteFieldOp:  {name: "CreateByteField", args: "ttN"},
		CreateBitFieldOp:   {name: "CreateBitField", args: "ttN"},
		ObjectTypeOp:       {name: "ObjectType", args: "s"},
		CreateQWordFieldOp: {name: "CreateQWordField", args: "ttN"},
		LAndOp:             {name: "LAnd", args: "tt"},
		LOrOp:              {name: "LOr", args: "tt"},
		LNotOp:             {name: "LNot", args: "t"},
		LEqualOp:           {name: "LEqual", args: "tt"},
		LGreaterOp:         {name: "LGreater", args: "tt"},
		LLessOp:            {name: "LLess", args: "tt"},
		ToBufferOp:         {name: "ToBuffer", args: "tT"},
		ToDecimalStringOp:  {name: "ToDecimalString", args: "tT"},
		ToHexStringOp:      {name: "ToHexString", args: "tT"},
		ToIntegerOp:        {name: "ToInteger", args: "tT"},
		ToStringOp:         {name: "ToString", args: "ttT"},
		CopyObjectOp:       {name: "CopyObject", args: "ts"},
		MidOp:              {name: "Mid", args: "tttT"},
		ContinueOp:         {name: "Continue"},
		IfOp:               {name: "If", args: "ptL"},
		ElseOp:             {name: "Else", args: "pL"},
		WhileOp:            {name: "While", args: "ptL"},
		NoopOp:             {name: "Noop"},
		ReturnOp:           {name: "Return", args: "t"},
		BreakOp:            {name: "Break"},
		BreakPointOp:       {name: "BreakPoint"},
	}
	for i := 0; i < 8; i++ {
		one[byte(Local0Op+i)] = opSpec{name: fmt.Sprintf("Local%d", i)}
	}
	for i := 0; i < 7; i++ {
		one[byte(Arg0Op+i)] = opSpec{name: fmt.Sprintf("Arg%d", i)}
	}
	for k, v := range one {
		opTable[k] = v
	}
	ext := map[byte]opSpec{
		MutexOp:       {name: "Mutex", args: "Nb"},
		EventOp:       {name: "Event", args: "N"},
		CondRefOfOp:   {name: "CondRefOf", args: "sT"},
		CreateFieldOp: {name: "CreateField", args: "tttN"},
		LoadTableOp:   {name: "LoadTable", args: "tttttt"},
		LoadOp:        {name: "Load", args: "nT"},
		StallOp:       {name: "Stall", args: "t"},
		SleepOp:       {name: "Sleep", args: "t"},
		AcquireOp:     {name: "Acquire", args: "sw"},
		SignalOp:      {name: "Signal", args: "s"},
		WaitOp:        {name: "Wait", args: "st"},
		ResetOp:       {name: "Reset", args: "s"},
		ReleaseOp:     {name: "Release", args: "s"},
		FromBCDOp:     {name: "FromBCD", args: "tT"},
		ToBCDOp:       {name: "ToBCD", args: "tT"},
		UnloadOp:      {name: "Unload", args: "s"},
		RevisionOp:    {name: "Revision"},
		DebugOp:       {name: "Debug"},
		FatalOp:       {name: "Fatal", args: "bdt"},
		TimerOp:       {name: "Timer"},
		OpRegionOp:    {name: "OperationRegion", args: "Nbtt"},
		FieldOp:       {name: "Field", args: "pnbF"},
		DeviceOp:      {name: "Device", args: "pNL", scope: true},
		ProcessorOp:   {name: "Processor", args: "pNbdbL", scope: true},
		PowerResOp:    {name: "PowerResource", args: "pNbwL", scope: true},
		ThermalZoneOp: {name: "ThermalZone", args: "pNL", scope: true},
		IndexFieldOp:  {name: "IndexField", args: "pnnbF"},
		BankFieldOp:   {name: "BankField", args: "pnntbF"},
		DataRegionOp:  {name: "DataTableRegion", args: "Nttt"},
	}
	for k, v := range ext {
		extTable[k] = v
	}
	for i := range opTable {
		opTable[i].derive()
		extTable[i].derive()
	}
}

var pseudoNames = [...]string{
	OpRoot - 0xF000:           "Root",
	OpNamePath - 0xF000:       "NamePath",
	OpCall - 0xF000:           "MethodCall",
	OpNullTarget - 0xF000:     "NullName",
	OpFieldUnit - 0xF000:      "FieldUnit",
	OpFieldReserved - 0xF000:  "ReservedField",
	OpFieldAccess - 0xF000:    "AccessAs",
	OpFieldExtAccess - 0xF000: "ExtendedAccessAs",
	OpFieldConnect - 0xF000:   "Connection",
}

func (o Op) spec() *opSpec {
	switch {
	case o < 0x100:
		return &opTable[o]
	case o.IsExtended():
		return &extTable[o&0xFF]
	}
	return nil
}

// String returns the ASL name of the operator ("Store", "Device",
// "Local0", "MethodCall", ...), or a hex form for an unknown value.
func (o Op) String() string {
	if s := o.spec(); s != nil && s.name != "" {
		return s.name
	}
	if o >= 0xF000 && int(o-0xF000) < len(pseudoNames) {
		return pseudoNames[o-0xF000]
	}
	if o.IsExtended() {
		return fmt.Sprintf("Op(0x5B 0x%02X)", byte(o))
	}
	return fmt.Sprintf("Op(0x%02X)", uint16(o))
}
