package aml

import (
	"fmt"
	"strings"
)

// NameString is an ACPI name path written in ASL syntax:
//
//	"\\"                 the root scope
//	"\\_SB.PCI0.DIAG"    absolute (root prefix), multi-segment
//	"^^FOO"              relative, two parent prefixes
//	"_TZ.DIAG"           relative, dual segment
//	"ABCD", "AB"         single segment; short segments are padded with '_'
//	                     ("AB" is encoded as "AB__")
//
// Segments are 1-4 characters: the first is 'A'-'Z' or '_', the others
// 'A'-'Z', '0'-'9' or '_'. The string is validated when it is encoded.
//
// As a Term, a NameString is a reference to a named object (or the
// invocation of a method that takes no arguments).
type NameString string

// MaxNameSegments is the largest number of segments in one name path (the
// MultiNamePrefix count is one byte).
const MaxNameSegments = 255

// AppendAML appends the encoded name path.
func (n NameString) AppendAML(b []byte) ([]byte, error) {
	return appendName(b, string(n), "NameString")
}

// Validate reports whether n is a well-formed name path.
func (n NameString) Validate() error {
	_, _, _, err := n.Parse()
	return err
}

// Parse splits n into its prefix (root: a leading '\'; parents: the number
// of '^') and its segments, each padded to 4 characters with '_'. A
// malformed name is an *EncodeError (Construct "NameString").
func (n NameString) Parse() (root bool, parents int, segs []string, err error) {
	root, parents, segs, err = n.parse()
	if err != nil {
		return false, 0, nil, newErr("NameString", string(n), err)
	}
	return root, parents, segs, nil
}

func (n NameString) parse() (root bool, parents int, segs []string, err error) {
	rest, root, parents, err := parsePrefix(string(n))
	if err != nil {
		return false, 0, nil, err
	}
	if rest == "" {
		return root, parents, nil, nil
	}
	cnt := strings.Count(rest, ".") + 1
	segs = make([]string, 0, cnt)
	off := len(n) - len(rest)
	for i := 0; i < cnt; i++ {
		seg := rest
		if j := strings.IndexByte(rest, '.'); j >= 0 {
			seg, rest = rest[:j], rest[j+1:]
		} else {
			rest = ""
		}
		if err := checkSeg(seg, off); err != nil {
			return false, 0, nil, err
		}
		off += len(seg) + 1
		segs = append(segs, seg+"____"[:4-len(seg)])
	}
	if len(segs) > MaxNameSegments {
		return false, 0, nil, fmt.Errorf("%d segments, at most %d: %w", len(segs), MaxNameSegments, ErrBadName)
	}
	return root, parents, segs, nil
}

// Segments returns the segments of n, each padded to 4 characters, without
// its root or parent prefix.
func (n NameString) Segments() ([]string, error) {
	_, _, segs, err := n.Parse()
	return segs, err
}

// MakeNameString builds the ASL form of a name path from its parts (the
// inverse of Parse). Segments are written as given (padding included).
func MakeNameString(root bool, parents int, segs ...string) NameString {
	var sb strings.Builder
	if root {
		sb.WriteByte('\\')
	}
	for i := 0; i < parents; i++ {
		sb.WriteByte('^')
	}
	for i, s := range segs {
		if i > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(s)
	}
	return NameString(sb.String())
}

func parsePrefix(s string) (rest string, root bool, parents int, err error) {
	if s == "" {
		return "", false, 0, fmt.Errorf("empty name: %w", ErrBadName)
	}
	if s[0] == '\\' {
		root = true
		s = s[1:]
	} else {
		for len(s) > 0 && s[0] == '^' {
			parents++
			s = s[1:]
		}
	}
	if s == "" && !root && parents == 0 {
		return "", false, 0, fmt.Errorf("empty name: %w", ErrBadName)
	}
	return s, root, parents, nil
}

// checkSeg validates one unpadded segment that starts at byte offset off of
// the name string.
func checkSeg(seg string, off int) error {
	if len(seg) == 0 {
		return fmt.Errorf("empty segment at offset %d: %w", off, ErrBadName)
	}
	if len(seg) > 4 {
		return fmt.Errorf("segment %q at offset %d is %d characters long, at most 4: %w", seg, off, len(seg), ErrBadName)
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c >= 'A' && c <= 'Z', c == '_':
		case c >= '0' && c <= '9':
			if i == 0 {
				return fmt.Errorf("segment %q at offset %d starts with digit %q: %w", seg, off, c, ErrBadName)
			}
		default:
			return fmt.Errorf("segment %q: character %q at offset %d is not A-Z, 0-9 or _: %w", seg, c, off+i, ErrBadName)
		}
	}
	return nil
}

// appendName validates and encodes the name path s without allocating.
func appendName(b []byte, s, construct string) ([]byte, error) {
	rest, root, parents, err := parsePrefix(s)
	if err != nil {
		return b, newErr(construct, s, err)
	}
	if root {
		b = append(b, RootChar)
	}
	for i := 0; i < parents; i++ {
		b = append(b, ParentPrefixChar)
	}
	if rest == "" {
		return append(b, NullName), nil
	}
	cnt := strings.Count(rest, ".") + 1
	switch {
	case cnt == 2:
		b = append(b, DualNamePrefix)
	case cnt > MaxNameSegments:
		return b, newErr(construct, s, fmt.Errorf("%d segments, at most %d: %w", cnt, MaxNameSegments, ErrBadName))
	case cnt > 2:
		b = append(b, MultiNamePrefix, byte(cnt))
	}
	off := len(s) - len(rest)
	for i := 0; i < cnt; i++ {
		seg := rest
		if j := strings.IndexByte(rest, '.'); j >= 0 {
			seg, rest = rest[:j], rest[j+1:]
		}
		if err := checkSeg(seg, off); err != nil {
			return b, newErr(construct, s, err)
		}
		off += len(seg) + 1
		b = append(b, seg...)
		for k := len(seg); k < 4; k++ {
			b = append(b, '_')
		}
	}
	return b, nil
}

// appendNameSeg encodes a single NameSeg (no prefix, one segment), as used
// by field units.
func appendNameSeg(b []byte, s, construct string) ([]byte, error) {
	if err := checkSeg(s, 0); err != nil {
		return b, newErr(construct, s, err)
	}
	b = append(b, s...)
	for k := len(s); k < 4; k++ {
		b = append(b, '_')
	}
	return b, nil
}
