package aml

import "fmt"

// Term is any AML term or data object: a named-object declaration, a
// statement, an expression, a literal or a reference. AppendAML appends the
// term's encoding to b and returns the extended slice. On error it returns an
// *EncodeError (b's contents beyond its original length are then unspecified).
type Term interface {
	AppendAML(b []byte) ([]byte, error)
}

// MaxPkgLength is the largest value a PkgLength can encode (2^28-1): the
// largest size, in bytes, of a package (the length bytes included), and the
// largest width, in bits, of a field unit.
const MaxPkgLength = 1<<28 - 1

// Encode returns the concatenated encodings of terms: a table body (the
// bytes after the 36-byte ACPI header) when terms are the top-level terms of
// a DefinitionBlock.
func Encode(terms ...Term) ([]byte, error) {
	return AppendEncode(make([]byte, 0, 1024), terms...)
}

// inlineTerms is how many child terms a node stores inside itself; longer
// lists get one slice of their own. Constructors copy their variadic
// arguments, so the caller's argument array stays on its stack and later
// changes to a caller's slice do not change the tree.
const inlineTerms = 2

// own copies terms into inl when they fit, else into one new slice.
func own(inl *[inlineTerms]Term, terms []Term) []Term {
	if len(terms) <= inlineTerms {
		n := copy(inl[:], terms)
		return inl[:n:n]
	}
	return append([]Term(nil), terms...)
}

// AppendEncode appends the encodings of terms to dst and returns the
// extended slice.
func AppendEncode(dst []byte, terms ...Term) ([]byte, error) {
	return appendTerms(dst, terms)
}

func appendTerms(b []byte, terms []Term) ([]byte, error) {
	var err error
	for _, t := range terms {
		if t == nil {
			return b, newErr("TermList", "", ErrNilTerm)
		}
		if b, err = t.AppendAML(b); err != nil {
			return b, err
		}
	}
	return b, nil
}

// appendArg appends one operand of construct; nil is an error.
func appendArg(b []byte, t Term, construct, path, what string) ([]byte, error) {
	if t == nil {
		return b, newErr(construct, path, fmt.Errorf("%s: %w", what, ErrNilTerm))
	}
	return t.AppendAML(b)
}

// appendTarget appends a Target operand: nil means "no target" (NullName).
func appendTarget(b []byte, t Term) ([]byte, error) {
	if t == nil {
		return append(b, NullName), nil
	}
	return t.AppendAML(b)
}

// PkgLengthSize returns how many bytes (1-4) the PkgLength of a package
// whose body (everything after the PkgLength) is bodyLen bytes long takes;
// a length AML cannot encode is an *EncodeError (Construct "PkgLength").
// The PkgLength counts its own bytes, so a body of 62 bytes fits one length
// byte (63) and a body of 63 needs two (65). The thresholds are those of the
// ACPI spec, which iasl uses too.
func PkgLengthSize(bodyLen int) (int, error) {
	n, err := pkgLengthSize(bodyLen)
	if err != nil {
		return 0, newErr("PkgLength", "", err)
	}
	return n, nil
}

func pkgLengthSize(bodyLen int) (int, error) {
	switch {
	case bodyLen < 0:
		return 0, fmt.Errorf("package body length %d: %w", bodyLen, ErrOutOfRange)
	case bodyLen+1 <= 0x3F:
		return 1, nil
	case bodyLen+2 <= 0xFFF:
		return 2, nil
	case bodyLen+3 <= 0xFFFFF:
		return 3, nil
	case bodyLen+4 <= MaxPkgLength:
		return 4, nil
	}
	return 0, fmt.Errorf("package body of %d bytes exceeds the PkgLength maximum %d: %w", bodyLen, MaxPkgLength, ErrTooLong)
}

// AppendPkgLength appends the PkgLength of a package whose body (everything
// after the PkgLength: name, flags, term list...) is bodyLen bytes long. The
// encoded value includes the PkgLength bytes themselves, as AML requires.
// Use it when the body length is known in advance (e.g. re-encoding a
// decoded tree); builders that write the body first use the open/close
// pattern of the Term implementations in this package instead.
func AppendPkgLength(b []byte, bodyLen int) ([]byte, error) {
	n, err := PkgLengthSize(bodyLen)
	if err != nil {
		return b, err
	}
	return appendPkgLengthN(b, n, bodyLen+n), nil
}

// AppendPkgLengthValue appends v in PkgLength format, without adding the
// length of the encoding itself: this is how a Field's unit widths (in bits)
// are encoded. The shortest encoding is used, with the same thresholds as
// for package lengths (iasl's rule; see the golden tests): values up to 62
// take one byte.
func AppendPkgLengthValue(b []byte, v int) ([]byte, error) {
	b, err := appendPkgLengthValue(b, v)
	if err != nil {
		return b, newErr("PkgLength", "", err)
	}
	return b, nil
}

func appendPkgLengthValue(b []byte, v int) ([]byte, error) {
	n, err := pkgLengthSize(v)
	if err != nil {
		return b, err
	}
	return appendPkgLengthN(b, n, v), nil
}

// appendPkgLengthN appends v encoded in exactly n PkgLength bytes.
func appendPkgLengthN(b []byte, n, v int) []byte {
	if n == 1 {
		return append(b, byte(v))
	}
	b = append(b, byte(n-1)<<6|byte(v&0x0F))
	v >>= 4
	for i := 1; i < n; i++ {
		b = append(b, byte(v))
		v >>= 8
	}
	return b
}

func putPkgLengthN(dst []byte, n, v int) {
	if n == 1 {
		dst[0] = byte(v)
		return
	}
	dst[0] = byte(n-1)<<6 | byte(v&0x0F)
	v >>= 4
	for i := 1; i < n; i++ {
		dst[i] = byte(v)
		v >>= 8
	}
}

// openPkg reserves one PkgLength byte and returns its position; the package
// body is appended next and closePkg fixes the length.
func openPkg(b []byte) ([]byte, int) {
	return append(b, 0), len(b)
}

// closePkg writes the PkgLength at position at (reserved by openPkg) for the
// body that follows it up to len(b), moving the body when the length needs
// more than one byte (no per-package buffers, as in QEMU's aml-build).
func closePkg(b []byte, at int) ([]byte, error) {
	body := len(b) - at - 1
	n, err := pkgLengthSize(body)
	if err != nil {
		return b, err
	}
	if n > 1 {
		old := len(b)
		for i := 1; i < n; i++ {
			b = append(b, 0)
		}
		copy(b[at+n:], b[at+1:old])
	}
	putPkgLengthN(b[at:], n, body+n)
	return b, nil
}
