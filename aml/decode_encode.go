package aml

import (
	"errors"
	"fmt"
)

var _ Term = Node{}

// errZeroNode is reported when the zero Node is encoded.
var errZeroNode = errors.New("zero Node (not part of a decoded tree)")

// AppendAML re-encodes the decoded construct (and everything below it)
// from its parts, as the decoder saw them: opcode, PkgLength (recomputed
// from the re-encoded body, in the decoded width when it fits), names, raw
// operands, operands, data and children; leaves (constants, strings, name
// references, field entries) are their input bytes. A root Node encodes
// its children one after the other. A decoded tree therefore re-encodes to the very
// bytes it was decoded from, which the tests use to check that the tree
// accounts for every byte. The zero Node is an *EncodeError.
func (n Node) AppendAML(b []byte) ([]byte, error) {
	if n.t == nil {
		return b, &EncodeError{Construct: "Node", Err: errZeroNode}
	}
	in := n.t.b
	if n.idx < 0 {
		// A leaf is its input bytes: the tree stores nothing else for it.
		return append(b, in[n.off:n.end]...), nil
	}
	switch n.op {
	case OpCall:
		b = append(b, n.Name()...)
	case OpFieldConnect:
		b = append(b, 0x02)
	case OpRoot:
	default:
		if n.op.IsExtended() {
			b = append(b, ExtOpPrefix, byte(n.op))
		} else {
			b = append(b, byte(n.op))
		}
	}
	pkgAt, width := -1, 0
	var err error
	var it partIter
	for it.init(n); it.advance(); {
		switch {
		case it.kind == aPkg:
			width = int(it.to - it.at)
			pkgAt = len(b)
			for i := 0; i < width; i++ {
				b = append(b, 0)
			}
		case it.hasKid && it.kid.idx < 0:
			b = append(b, in[it.kid.off:it.kid.end]...)
		case it.hasKid:
			if b, err = it.Node().AppendAML(b); err != nil {
				return b, err
			}
		default:
			b = append(b, in[it.at:it.to]...)
		}
	}
	if pkgAt < 0 {
		return b, nil
	}
	return fixPkgLength(b, n, pkgAt, width)
}

// pkgMax[w] is the largest PkgLength value w bytes can encode.
var pkgMax = [5]int{0, 0x3F, 0xFFF, 0xFFFFF, 0xFFFFFFF}

// fixPkgLength writes the PkgLength reserved at b[at:at+width], widening
// it (and moving the body) when the body does not fit.
func fixPkgLength(b []byte, n Node, at, width int) ([]byte, error) {
	body := len(b) - at - width
	w := width
	for w <= 4 && body+w > pkgMax[w] {
		w++
	}
	if w > 4 {
		return b, &EncodeError{Construct: n.op.String(), Err: fmt.Errorf("package body of %d bytes: %w", body, ErrTooLong)}
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
