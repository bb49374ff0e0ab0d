package aml

import (
	"errors"
	"fmt"
)

var _ Term = (*Node)(nil)

// errNodeShape reports a Node whose operands do not match its opcode.
var errNodeShape = errors.New("node operands do not match the opcode")

func nodeErr(n *Node, err error) error {
	path := ""
	if n.Name() != nil {
		path = n.Name().String()
	}
	return &EncodeError{Construct: n.Op.String(), Path: path, Err: err}
}

// AppendAML re-encodes the decoded construct (and everything below it) from
// its fields: opcode, PkgLength (keeping the decoded width PkgBytes when the
// length still fits, so that a decoded tree re-encodes to the very same
// bytes), names, operands, data and children. A root Node encodes its
// children one after the other. An inconsistent Node (wrong operand count,
// a value too wide for its prefix, an invalid name) is an *EncodeError.
func (n *Node) AppendAML(b []byte) ([]byte, error) {
	var err error
	switch {
	case n.Op == OpRoot:
		for _, c := range n.Children() {
			if b, err = c.AppendAML(b); err != nil {
				return b, err
			}
		}
		return b, nil
	case n.Op == OpNamePath || n.Op == OpCall:
		if b, err = appendRawName(b, n); err != nil {
			return b, err
		}
		for _, a := range n.Args() {
			if b, err = a.AppendAML(b); err != nil {
				return b, err
			}
		}
		return b, nil
	case n.Op == OpNullTarget:
		return append(b, NullName), nil
	case n.Op == OpFieldUnit:
		if len(n.Name()) != 4 || !isLeadNameChar(n.Name()[0]) || !isNameChar(n.Name()[1]) || !isNameChar(n.Name()[2]) || !isNameChar(n.Name()[3]) {
			return b, nodeErr(n, fmt.Errorf("field unit name %q: %w", []byte(n.Name()), ErrBadName))
		}
		b = append(b, n.Name()...)
		return appendPkgValue(b, n, n.Value)
	case n.Op == OpFieldReserved:
		b = append(b, 0x00)
		return appendPkgValue(b, n, n.Value)
	case n.Op == OpFieldAccess:
		if n.Value > 0xFFFF {
			return b, nodeErr(n, fmt.Errorf("value %#x: %w", n.Value, ErrOutOfRange))
		}
		return append(b, 0x01, byte(n.Value), byte(n.Value>>8)), nil
	case n.Op == OpFieldExtAccess:
		if n.Value > 0xFFFFFF {
			return b, nodeErr(n, fmt.Errorf("value %#x: %w", n.Value, ErrOutOfRange))
		}
		return append(b, 0x03, byte(n.Value), byte(n.Value>>8), byte(n.Value>>16)), nil
	case n.Op == OpFieldConnect:
		if len(n.Args()) != 1 {
			return b, nodeErr(n, fmt.Errorf("%d operands, want 1: %w", len(n.Args()), errNodeShape))
		}
		return n.Args()[0].AppendAML(append(b, 0x02))
	}

	sp := n.Op.spec()
	if sp == nil || sp.name == "" {
		return b, nodeErr(n, fmt.Errorf("unknown opcode %#x: %w", uint16(n.Op), errNodeShape))
	}
	if n.Op.IsExtended() {
		b = append(b, ExtOpPrefix, byte(n.Op))
	} else {
		b = append(b, byte(n.Op))
	}
	switch n.Op {
	case ZeroOp, OneOp, OnesOp:
		return b, nil
	case BytePrefix:
		return appendLEValue(b, n, 1)
	case WordPrefix:
		return appendLEValue(b, n, 2)
	case DWordPrefix:
		return appendLEValue(b, n, 4)
	case QWordPrefix:
		return appendLEValue(b, n, 8)
	case StringPrefix:
		for i, c := range n.Data() {
			if c == 0 {
				return b, nodeErr(n, fmt.Errorf("NUL at index %d: %w", i, ErrBadString))
			}
		}
		b = append(b, n.Data()...)
		return append(b, 0), nil
	}

	pkgAt, width := -1, 0
	arg := 0
	var rawShift uint
	for i := 0; i < len(sp.args); i++ {
		switch sp.args[i] {
		case aPkg:
			width = int(n.PkgBytes)
			if width < 1 || width > 4 {
				width = 1
			}
			pkgAt = len(b)
			for k := 0; k < width; k++ {
				b = append(b, 0)
			}
		case aDefName:
			if b, err = appendRawName(b, n); err != nil {
				return b, err
			}
		case aTerms, aFields, aElems:
			for _, c := range n.Children() {
				if b, err = c.AppendAML(b); err != nil {
					return b, err
				}
			}
		case aBytes:
			b = append(b, n.Data()...)
		case aByte, aWord, aDWord:
			for k := rawSize(sp.args[i]); k > 0; k-- {
				b = append(b, byte(n.Value>>rawShift))
				rawShift += 8
			}
		default:
			if arg >= len(n.Args()) {
				return b, nodeErr(n, fmt.Errorf("%d operands, want more: %w", len(n.Args()), errNodeShape))
			}
			if b, err = n.Args()[arg].AppendAML(b); err != nil {
				return b, err
			}
			arg++
		}
	}
	if arg != len(n.Args()) {
		return b, nodeErr(n, fmt.Errorf("%d operands, want %d: %w", len(n.Args()), arg, errNodeShape))
	}
	if rawShift < 64 && n.Value>>rawShift != 0 {
		return b, nodeErr(n, fmt.Errorf("value %#x has more than the %d bytes of raw operands: %w", n.Value, rawShift/8, ErrOutOfRange))
	}
	if pkgAt >= 0 {
		return fixPkgLength(b, n, pkgAt, width)
	}
	return b, nil
}

func appendRawName(b []byte, n *Node) ([]byte, error) {
	if len(n.Name()) == 0 {
		return b, nodeErr(n, fmt.Errorf("empty name: %w", ErrBadName))
	}
	d := decoder{b: n.Name()}
	if _, err := d.nameString(len(n.Name())); err != nil || d.pos != len(n.Name()) {
		return b, nodeErr(n, fmt.Errorf("malformed name path % x: %w", []byte(n.Name()), ErrBadName))
	}
	return append(b, n.Name()...), nil
}

func appendLEValue(b []byte, n *Node, size int) ([]byte, error) {
	if size < 8 && n.Value>>(8*size) != 0 {
		return b, nodeErr(n, fmt.Errorf("value %#x does not fit %d bytes: %w", n.Value, size, ErrOutOfRange))
	}
	for i := 0; i < size; i++ {
		b = append(b, byte(n.Value>>(8*i)))
	}
	return b, nil
}

// pkgMax[w] is the largest PkgLength value w bytes can encode.
var pkgMax = [5]int{0, 0x3F, 0xFFF, 0xFFFFF, 0xFFFFFFF}

// fixPkgLength writes the PkgLength reserved at b[at:at+width], widening
// it (and moving the body) when the body does not fit.
func fixPkgLength(b []byte, n *Node, at, width int) ([]byte, error) {
	body := len(b) - at - width
	w := width
	for w <= 4 && body+w > pkgMax[w] {
		w++
	}
	if w > 4 {
		return b, nodeErr(n, fmt.Errorf("package body of %d bytes: %w", body, ErrTooLong))
	}
	if w != width {
		for k := width; k < w; k++ {
			b = append(b, 0)
		}
		copy(b[at+w:], b[at+width:at+width+body])
	}
	putPkgLengthN(b[at:at+w], w, body+w)
	return b, nil
}

// appendPkgValue appends a PkgLength-encoded value (field widths), with the
// decoded width when it fits.
func appendPkgValue(b []byte, n *Node, v uint64) ([]byte, error) {
	if v > uint64(pkgMax[4]) {
		return b, nodeErr(n, fmt.Errorf("bit width %d: %w", v, ErrOutOfRange))
	}
	w := int(n.PkgBytes)
	if w < 1 || w > 4 {
		w = 1
	}
	for int(v) > pkgMax[w] {
		w++
	}
	var tmp [4]byte
	putPkgLengthN(tmp[:w], w, int(v))
	return append(b, tmp[:w]...), nil
}
