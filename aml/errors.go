package aml

import (
	"errors"
	"strings"
)

// Sentinel errors wrapped by *EncodeError. Callers branch on them with
// errors.Is.
var (
	// ErrNilTerm: a nil Term was given where a term is required.
	ErrNilTerm = errors.New("nil term")
	// ErrBadName: a name string or name segment does not follow the ASL
	// NameString grammar.
	ErrBadName = errors.New("invalid name")
	// ErrOutOfRange: a numeric argument (Local/Arg index, argument count,
	// sync level, field width, object type, region space, ...) is outside
	// the range the AML encoding allows.
	ErrOutOfRange = errors.New("value out of range")
	// ErrTooLong: a package, buffer, string or package length exceeds what
	// AML can encode (255 Package elements, PkgLength 2^28-1).
	ErrTooLong = errors.New("too long")
	// ErrFieldOffset: a Field's Offset() goes backwards or its units overflow
	// the 32-bit bit offset space.
	ErrFieldOffset = errors.New("bad field offset")
	// ErrBadString: a string literal holds a byte AML strings cannot hold
	// (NUL or a byte above 0x7F).
	ErrBadString = errors.New("invalid string character")
)

// EncodeError is the single error type returned by Encode, AppendEncode and
// every Term's AppendAML. It says which construct failed, which name it
// defines or references (when it has one), the chain of enclosing named
// objects, and what is wrong (Err, which wraps one of the Err* sentinels).
type EncodeError struct {
	// Construct is the ASL operator being encoded, e.g. "Method", "Local", "Field".
	Construct string
	// Path is the name the construct defines or references, as written by the
	// caller (empty when the construct has no name).
	Path string
	// Within lists the enclosing named objects (Scope, Device, Method, ...),
	// outermost first, as written by the caller.
	Within []string
	// Err says what is wrong; it wraps one of the Err* sentinels.
	Err error
}

func (e *EncodeError) Error() string {
	var sb strings.Builder
	sb.WriteString("aml: ")
	sb.WriteString(e.Construct)
	if e.Path != "" {
		sb.WriteString(" ")
		sb.WriteString(quoteName(e.Path))
	}
	if len(e.Within) > 0 {
		sb.WriteString(" (in ")
		for i, w := range e.Within {
			if i > 0 {
				sb.WriteString(" > ")
			}
			sb.WriteString(quoteName(w))
		}
		sb.WriteString(")")
	}
	sb.WriteString(": ")
	if e.Err != nil {
		sb.WriteString(e.Err.Error())
	} else {
		sb.WriteString("unknown error")
	}
	return sb.String()
}

// Unwrap returns the underlying error.
func (e *EncodeError) Unwrap() error { return e.Err }

func quoteName(s string) string {
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7E {
			return strconvQuote(s)
		}
	}
	return s
}

func strconvQuote(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c < 0x7F && c != '"' && c != '\\' {
			sb.WriteByte(c)
			continue
		}
		sb.WriteString(`\x`)
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&15])
	}
	sb.WriteByte('"')
	return sb.String()
}

// newErr builds an *EncodeError.
func newErr(construct, path string, err error) error {
	return &EncodeError{Construct: construct, Path: path, Err: err}
}

// within records that err happened inside the named object path. It returns
// err unchanged when it is not an *EncodeError.
func within(err error, path string) error {
	var e *EncodeError
	if errors.As(err, &e) {
		e.Within = append([]string{path}, e.Within...)
	}
	return err
}
