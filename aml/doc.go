// Package aml encodes and decodes ACPI Machine Language (AML), the bytecode
// of DSDT and SSDT tables (ACPI 6.5 chapter 20).
//
// The encoder is a typed builder: every AML construct is a Go constructor
// returning a Term, and terms nest the way ASL does. Encode walks the tree
// once, appending to a single growing []byte; the PkgLength of a package
// (Scope, Device, Method, If, Buffer, Field, ...) is written after its body,
// moving the body when the length needs more than one byte, as QEMU's
// aml-build does. Bad input never panics: Encode returns an *EncodeError
// naming the construct, the name it defines or references, the enclosing
// named objects and the problem (which wraps one of the Err* sentinels).
//
// Names are Go strings in ASL syntax ("\\_SB.PCI0", "^^FOO", "AB" for
// "AB__"), validated at encode time; lower-case letters are rejected (iasl
// would silently upper-case them). Integers are encoded like iasl does
// with its default integer optimization (Zero, One, Ones, then the smallest
// Byte/Word/DWord/QWord prefix). The encodings are checked byte for byte
// against iasl in the golden tests (fixtures/aml/*.asl, compiled with
// "iasl -on" so that iasl keeps name paths as written).
//
// Differences from iasl to keep in mind:
//   - iasl gathers every External into one "If (Zero) {...}" block at the
//     start of the table; External here encodes the bare ExternalOp where
//     it is placed. Wrap them in If(Zero, ...) to get iasl's layout.
//   - ASL "Return ()" is Return(Zero) here (what iasl emits).
//   - LNotEqual, LLessEqual and LGreaterEqual are LNot of LEqual, LGreater
//     and LLess, as in iasl.
//
// The decoder (Decode) parses any AML byte stream — a whole DSDT or SSDT
// body — into a tree of Node values with the byte offset and length of
// every term. The tree is compact (at most 4 bytes per input byte for
// QEMU's DSDTs): it stores 12 bytes per operator or named object, in
// preorder, and nothing for integer constants, strings, Locals/Args and
// name references, which a Node reads from the input when asked; names
// and data alias the input. Method invocations need the callee's argument
// count, known only from its declaration: Decode resolves names with the
// ACPI search rules against the Methods and Externals it has seen and,
// when a later declaration could change an earlier lookup, decodes again
// after a declaration pass (as ACPICA's two-pass parse does). Malformed
// input returns a *DecodeError with the offset; nesting depth and node
// count are bounded. A Node is itself a Term, so a decoded tree re-encodes
// to the same bytes, and Format/FormatWith print it as ASL (optionally
// with each term's offset).
//
// Operator names come from one opcode table (spelled as "iasl -dl" prints
// them, e.g. XOr, NAnd): the encoder's errors, the decoder and the printer
// use it. Flags are named values, as in QEMU's aml-build: Method takes
// MethodFlags (Serialized, NotSerialized, SyncLevel(n)), Field,
// IndexField and BankField a LockRule (Lock, NoLock).
//
// Errors have one shape per direction: everything that encodes (Encode,
// every Term, PkgLengthSize, AppendPkgLength, EISAIDValue,
// NameString.Parse) returns an *EncodeError naming the construct and the
// name it concerns; Decode returns a *DecodeError with the byte offset.
// Both wrap sentinels (ErrBadName, ErrOutOfRange, ErrTooDeep, ...) for
// errors.Is. (Package acpi does the same one layer up: *FormatError with
// an offset for table bytes, *ConfigError with a field for what a caller
// asks to build.)
//
// A built tree is not modified by encoding: it can be encoded again, and
// from several goroutines at once. Constructors copy their variadic
// arguments, so reusing a slice after a call does not change the tree.
//
// This package knows nothing about diagnostics, regions or QEMU; it only
// deals with AML. The table header (DefinitionBlock) belongs to package acpi.
package aml
