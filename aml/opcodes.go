package aml

// AML opcodes and prefixes (ACPI 6.5, section 20.3 "AML Byte Stream Byte
// Values"). Extended opcodes are listed by their second byte and are preceded
// by ExtOpPrefix in the byte stream.
const (
	ZeroOp             = 0x00
	OneOp              = 0x01
	AliasOp            = 0x06
	NameOp             = 0x08
	BytePrefix         = 0x0A
	WordPrefix         = 0x0B
	DWordPrefix        = 0x0C
	StringPrefix       = 0x0D
	QWordPrefix        = 0x0E
	ScopeOp            = 0x10
	BufferOp           = 0x11
	PackageOp          = 0x12
	VarPackageOp       = 0x13
	MethodOp           = 0x14
	ExternalOp         = 0x15
	DualNamePrefix     = 0x2E
	MultiNamePrefix    = 0x2F
	ExtOpPrefix        = 0x5B
	RootChar           = 0x5C
	ParentPrefixChar   = 0x5E
	NullName           = 0x00
	Local0Op           = 0x60 // Local0..Local7 = 0x60..0x67
	Arg0Op             = 0x68 // Arg0..Arg6 = 0x68..0x6E
	StoreOp            = 0x70
	RefOfOp            = 0x71
	AddOp              = 0x72
	ConcatOp           = 0x73
	SubtractOp         = 0x74
	IncrementOp        = 0x75
	DecrementOp        = 0x76
	MultiplyOp         = 0x77
	DivideOp           = 0x78
	ShiftLeftOp        = 0x79
	ShiftRightOp       = 0x7A
	AndOp              = 0x7B
	NandOp             = 0x7C
	OrOp               = 0x7D
	NorOp              = 0x7E
	XorOp              = 0x7F
	NotOp              = 0x80
	FindSetLeftBitOp   = 0x81
	FindSetRightBitOp  = 0x82
	DerefOfOp          = 0x83
	ConcatResOp        = 0x84
	ModOp              = 0x85
	NotifyOp           = 0x86
	SizeOfOp           = 0x87
	IndexOp            = 0x88
	MatchOp            = 0x89
	CreateDWordFieldOp = 0x8A
	CreateWordFieldOp  = 0x8B
	CreateByteFieldOp  = 0x8C
	CreateBitFieldOp   = 0x8D
	ObjectTypeOp       = 0x8E
	CreateQWordFieldOp = 0x8F
	LAndOp             = 0x90
	LOrOp              = 0x91
	LNotOp             = 0x92
	LEqualOp           = 0x93
	LGreaterOp         = 0x94
	LLessOp            = 0x95
	ToBufferOp         = 0x96
	ToDecimalStringOp  = 0x97
	ToHexStringOp      = 0x98
	ToIntegerOp        = 0x99
	ToStringOp         = 0x9C
	CopyObjectOp       = 0x9D
	MidOp              = 0x9E
	ContinueOp         = 0x9F
	IfOp               = 0xA0
	ElseOp             = 0xA1
	WhileOp            = 0xA2
	NoopOp             = 0xA3
	ReturnOp           = 0xA4
	BreakOp            = 0xA5
	BreakPointOp       = 0xCC
	OnesOp             = 0xFF
)

// Extended opcodes (second byte after ExtOpPrefix).
const (
	MutexOp       = 0x01
	EventOp       = 0x02
	CondRefOfOp   = 0x12
	CreateFieldOp = 0x13
	LoadTableOp   = 0x1F
	LoadOp        = 0x20
	StallOp       = 0x21
	SleepOp       = 0x22
	AcquireOp     = 0x23
	SignalOp      = 0x24
	WaitOp        = 0x25
	ResetOp       = 0x26
	ReleaseOp     = 0x27
	FromBCDOp     = 0x28
	ToBCDOp       = 0x29
	UnloadOp      = 0x2A
	RevisionOp    = 0x30
	DebugOp       = 0x31
	FatalOp       = 0x32
	TimerOp       = 0x33
	OpRegionOp    = 0x80
	FieldOp       = 0x81
	DeviceOp      = 0x82
	ProcessorOp   = 0x83
	PowerResOp    = 0x84
	ThermalZoneOp = 0x85
	IndexFieldOp  = 0x86
	BankFieldOp   = 0x87
	DataRegionOp  = 0x88
)
