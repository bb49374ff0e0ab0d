package aml

import (
	"bytes"
	"errors"
	"testing"
)

// parseNameBytes decodes the NameString at the start of b (a test-local
// decoder used to check the encoder's output).
func parseNameBytes(b []byte) (root bool, parents int, segs []string, n int, ok bool) {
	i := 0
	if i < len(b) && b[i] == RootChar {
		root = true
		i++
	} else {
		for i < len(b) && b[i] == ParentPrefixChar {
			parents++
			i++
		}
	}
	if i >= len(b) {
		return
	}
	cnt := 1
	switch b[i] {
	case NullName:
		return root, parents, nil, i + 1, true
	case DualNamePrefix:
		cnt = 2
		i++
	case MultiNamePrefix:
		if i+1 >= len(b) {
			return
		}
		cnt = int(b[i+1])
		i += 2
	}
	for k := 0; k < cnt; k++ {
		if i+4 > len(b) {
			return
		}
		segs = append(segs, string(b[i:i+4]))
		i += 4
	}
	return root, parents, segs, i, true
}

// FuzzNameString: any Go string either encodes to a NameString that decodes
// back to what Parse reports, or fails with an *EncodeError wrapping
// ErrBadName; never a panic.
func FuzzNameString(f *testing.F) {
	for _, s := range []string{`\`, `^`, `\_SB.PCI0.DIAG`, `^^FOO`, "AB", "_TZ.DIAG", "A.B.C.D", `\_SB..X`, "1ABC", "ABCDE", "", "^^^", `\^A`, "a", "A\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := Encode(NameString(s))
		root, parents, segs, perr := NameString(s).Parse()
		if err != nil {
			var e *EncodeError
			if !errors.As(err, &e) || !errors.Is(err, ErrBadName) {
				t.Fatalf("error %v (%T) is not an *EncodeError wrapping ErrBadName", err, err)
			}
			if perr == nil {
				t.Fatalf("Encode failed (%v) but Parse accepted %q", err, s)
			}
			return
		}
		if perr != nil {
			t.Fatalf("Encode accepted %q but Parse failed: %v", s, perr)
		}
		r2, p2, s2, n, ok := parseNameBytes(b)
		if !ok || n != len(b) {
			t.Fatalf("encoding % X of %q does not decode (ok=%v, used %d of %d)", b, s, ok, n, len(b))
		}
		if r2 != root || p2 != parents || len(s2) != len(segs) {
			t.Fatalf("%q: encoded (%v,%d,%q) parsed (%v,%d,%q)", s, r2, p2, s2, root, parents, segs)
		}
		for i := range segs {
			if segs[i] != s2[i] {
				t.Fatalf("%q: segment %d encoded %q, parsed %q", s, i, s2[i], segs[i])
			}
		}
		again, err := Encode(MakeNameString(root, parents, segs...))
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("%q: MakeNameString round trip: % X (%v), want % X", s, again, err, b)
		}
	})
}

// FuzzInt: every integer encodes to the shortest form and decodes back.
func FuzzInt(f *testing.F) {
	for _, v := range []uint64{0, 1, 2, 0xFF, 0x100, 0xFFFF, 0x10000, 0xFFFFFFFF, 0x100000000, 1<<64 - 1, 1<<64 - 2} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v uint64) {
		b, err := Encode(Int(v))
		if err != nil {
			t.Fatal(err)
		}
		var got uint64
		var want int
		switch b[0] {
		case ZeroOp:
			got, want = 0, 1
		case OneOp:
			got, want = 1, 1
		case OnesOp:
			got, want = 1<<64-1, 1
		case BytePrefix, WordPrefix, DWordPrefix, QWordPrefix:
			size := map[byte]int{BytePrefix: 1, WordPrefix: 2, DWordPrefix: 4, QWordPrefix: 8}[b[0]]
			want = 1 + size
			if len(b) != want {
				t.Fatalf("%#x: % X", v, b)
			}
			for i := size; i >= 1; i-- {
				got = got<<8 | uint64(b[i])
			}
			// Shortest form: the value does not fit the next smaller prefix.
			if size > 1 && got < 1<<(8*size/2) {
				t.Fatalf("%#x encoded with %d bytes: % X", v, size, b)
			}
			if size == 1 && got < 2 {
				t.Fatalf("%#x not encoded as Zero/One: % X", v, b)
			}
		default:
			t.Fatalf("%#x: unexpected opcode % X", v, b)
		}
		if got != v || len(b) != want {
			t.Fatalf("%#x: encoded % X decodes to %#x", v, b, got)
		}
	})
}

// treeVM turns fuzz bytes into a well-typed term tree: expressions,
// targets, statements and declarations each on their own stack, so that
// every tree the encoder accepts is valid AML. Some choices are out of range
// on purpose (Local(8), Arg(7), sync level 16, bad names, ...).
type treeVM struct {
	in    []byte
	exprs []Term
	stmts []Term
	decls []Term
	n     int
}

func (v *treeVM) byte() byte {
	if len(v.in) == 0 {
		return 0
	}
	c := v.in[0]
	v.in = v.in[1:]
	return c
}

func (v *treeVM) expr() Term {
	if len(v.exprs) == 0 {
		return Zero
	}
	e := v.exprs[len(v.exprs)-1]
	v.exprs = v.exprs[:len(v.exprs)-1]
	return e
}

func (v *treeVM) target() Term {
	switch c := v.byte(); c % 5 {
	case 0:
		return Local(int(c/5) % 9) // 8 is invalid
	case 1:
		return Arg(int(c/5) % 8) // 7 is invalid
	case 2:
		return nil // NullName where allowed, error elsewhere
	default:
		return v.varName(c)
	}
}

var fuzzVarNames = []string{"V000", "V1", `\V002`, `^V003`, `\_SB.V004`, "V0.V1", `\`, "1BAD", "VVVVV", "v"}

func (v *treeVM) varName(c byte) NameString {
	return NameString(fuzzVarNames[int(c)%len(fuzzVarNames)])
}

func (v *treeVM) stmtList(max int) []Term {
	k := min(int(v.byte())%(max+1), len(v.stmts))
	out := append([]Term(nil), v.stmts[len(v.stmts)-k:]...)
	v.stmts = v.stmts[:len(v.stmts)-k]
	return out
}

func (v *treeVM) declList(max int) []Term {
	k := min(int(v.byte())%(max+1), len(v.decls))
	out := append([]Term(nil), v.decls[len(v.decls)-k:]...)
	v.decls = v.decls[:len(v.decls)-k]
	return out
}

func (v *treeVM) run() []Term {
	for len(v.in) > 0 && v.n < 400 {
		v.n++
		switch op := v.byte(); op % 24 {
		case 0:
			var x uint64
			for i := 0; i < int(v.byte()%9); i++ {
				x = x<<8 | uint64(v.byte())
			}
			v.exprs = append(v.exprs, Int(x))
		case 1:
			v.exprs = append(v.exprs, Local(int(v.byte())%8))
		case 2:
			v.exprs = append(v.exprs, Arg(int(v.byte())%7))
		case 3:
			s := make([]byte, v.byte()%6)
			for i := range s {
				s[i] = v.byte() % 0x81 // 0x00 and 0x80 are invalid
			}
			v.exprs = append(v.exprs, Str(string(s)))
		case 4:
			v.exprs = append(v.exprs, v.varName(v.byte()))
		case 5:
			a, b := v.expr(), v.expr()
			v.exprs = append(v.exprs, Add(a, b, nil))
		case 6:
			a, b := v.expr(), v.expr()
			switch v.byte() % 4 {
			case 0:
				v.exprs = append(v.exprs, LEqual(a, b))
			case 1:
				v.exprs = append(v.exprs, LNotEqual(a, b))
			case 2:
				v.exprs = append(v.exprs, LAnd(a, b))
			default:
				v.exprs = append(v.exprs, LNot(a))
			}
		case 7:
			v.exprs = append(v.exprs, Timer())
		case 8:
			data := make([]byte, int(v.byte())*3)
			v.exprs = append(v.exprs, Buffer(data))
		case 9:
			k := min(int(v.byte()%4), len(v.exprs))
			els := append([]Term(nil), v.exprs[len(v.exprs)-k:]...)
			v.exprs = v.exprs[:len(v.exprs)-k]
			if v.byte()%8 != 0 { // mostly valid packages; sometimes a bad element
				for i, e := range els {
					if !isDataObject(e, true) {
						els[i] = Int(uint64(i))
					}
				}
			}
			v.exprs = append(v.exprs, Package(els...))
		case 10:
			src := v.expr()
			v.stmts = append(v.stmts, Store(src, v.target()))
		case 11:
			a, b := v.expr(), v.expr()
			v.stmts = append(v.stmts, Add(a, b, v.target()))
		case 12:
			p := v.expr()
			body := v.stmtList(3)
			it := If(p, body...)
			if v.byte()%2 == 0 {
				v.stmts = append(v.stmts, it.Else(v.stmtList(2)...))
			} else {
				v.stmts = append(v.stmts, it)
			}
		case 13:
			p := v.expr()
			v.stmts = append(v.stmts, While(p, v.stmtList(3)...))
		case 14:
			v.stmts = append(v.stmts, Return(v.expr()))
		case 15:
			v.stmts = append(v.stmts, Increment(v.target()))
		case 16:
			v.stmts = append(v.stmts, Break())
		case 17:
			c := v.byte()
			name := []string{"M000", "M001", "_TMP", "M0.M1", "9M"}[c%5]
			v.decls = append(v.decls, Method(name, int(c/5)%9, MethodFlags(c>>7)<<3|SyncLevel(v.byte()%17), v.stmtList(6)...))
		case 18:
			name, val := string(v.varName(v.byte())), v.expr()
			if !isDataObject(val, false) && v.byte()%8 != 0 {
				val = Str("s")
			}
			v.decls = append(v.decls, Name(name, val))
		case 19:
			c := v.byte()
			name := []string{`\_SB`, "DEV0", `\_TZ.TZ00`, "^^X", "toolong"}[c%5]
			ds := v.declList(4)
			switch (c / 5) % 3 {
			case 0:
				v.decls = append(v.decls, Scope(name, ds...))
			case 1:
				v.decls = append(v.decls, Device(name, ds...))
			default:
				v.decls = append(v.decls, ThermalZone(name, ds...))
			}
		case 20:
			off, l := v.expr(), v.expr()
			v.decls = append(v.decls, OperationRegion("R000", RegionSpace(v.byte()%4), off, l))
		case 21:
			var els []FieldElement
			for i := 0; i < int(v.byte()%6); i++ {
				c := v.byte()
				switch c % 4 {
				case 0:
					els = append(els, FieldUnit([]string{"F0", "F1", "F22", "BAD!"}[c/4%4], int(v.byte())))
				case 1:
					els = append(els, Reserved(int(v.byte())))
				case 2:
					els = append(els, Offset(int(v.byte())))
				default:
					els = append(els, AccessAs(AccessType(v.byte()%7), v.byte()))
				}
			}
			c := v.byte()
			v.decls = append(v.decls, Field("R000", AccessType(c%7), LockRule(c>>3%4), UpdateRule(c>>4%4), els...))
		case 22:
			v.decls = append(v.decls, Mutex("MX00", int(v.byte()%17)))
		default:
			// A statement list becomes a method body at top level.
			v.decls = append(v.decls, Method("M002", 1, NotSerialized, v.stmtList(8)...))
		}
	}
	return v.decls
}

// FuzzEncodeTree builds well-typed trees from fuzz bytes. The encoder
// either rejects a tree with an *EncodeError, or produces AML that the
// package's decoder parses and re-encodes to the same bytes.
func FuzzEncodeTree(f *testing.F) {
	for _, seed := range [][]byte{
		{0, 2, 1, 0x12, 1, 3, 10, 0, 17, 0x14, 0, 6},
		{4, 1, 4, 2, 6, 0, 0, 1, 5, 10, 3, 12, 1, 1, 23, 1},
		{0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 20, 0, 0, 1, 21, 3, 0, 32, 2, 8, 0, 32, 3},
		{8, 30, 18, 0, 19, 0, 1, 19, 5, 1, 19, 10, 1},
		{1, 8, 10, 0, 23, 1}, // Local(8)
		{22, 16},             // sync level 16
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		vm := &treeVM{in: prog}
		terms := vm.run()
		b, err := Encode(terms...)
		if err != nil {
			var e *EncodeError
			if !errors.As(err, &e) {
				t.Fatalf("error %v is %T, not *EncodeError", err, err)
			}
			if e.Err == nil || e.Construct == "" {
				t.Fatalf("incomplete EncodeError %#v", e)
			}
			return
		}
		root, err := Decode(b)
		if errors.Is(err, ErrTooDeep) {
			return // the decoder's documented nesting limit (MaxDecodeDepth)
		}
		if err != nil {
			t.Fatalf("decoder rejects encoder output: %v\n% X", err, b)
		}
		again, err := Encode(root)
		if err != nil {
			t.Fatalf("re-encoding the decoded tree: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip differs:\n% X\n% X", b, again)
		}
	})
}
