// Package gdbstub is a small client of the GDB remote serial protocol,
// enough to read every vCPU's registers from QEMU's gdbstub: qSupported,
// qXfer:features:read (the target description: the register layout),
// qfThreadInfo/qsThreadInfo, qThreadExtraInfo, Hg + g per thread, and D
// (detach, which resumes the VM).
//
// QEMU starts the stub on demand (HMP "gdbserver unix:PATH,server=on,wait=off")
// and stops the VM while a debugger is attached; Detach lets it run again.
// Every reply is bounded (MaxPacket) and every read obeys the context's
// deadline. Register bytes come from the guest's CPU state: they are data,
// never trusted as sizes.
package gdbstub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// MaxPacket bounds one reply packet (decoded).
const MaxPacket = 1 << 20

// ProtocolError is a malformed exchange: Offset is the byte offset in the
// stream where it was found.
type ProtocolError struct {
	Offset int64
	Msg    string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("gdbstub: protocol error at stream offset %d: %s", e.Offset, e.Msg)
}

// ErrorReply is an "Enn" reply to a command.
type ErrorReply struct {
	Command string
	Code    string
}

func (e *ErrorReply) Error() string {
	return fmt.Sprintf("gdbstub: %s: error reply %s", e.Command, e.Code)
}

// Client speaks the remote protocol over one connection. It is not safe
// for concurrent use.
type Client struct {
	conn net.Conn
	r    *bufio.Reader
	off  int64
	// Unsolicited are packets the stub sent while an acknowledgement was
	// awaited (stop replies).
	Unsolicited []string
}

// Dial connects to a stub ("unix", "/path" or "tcp", "host:port").
func Dial(ctx context.Context, network, addr string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("gdbstub: dial: %w", err)
	}
	return NewClient(c), nil
}

// NewClient wraps an established connection.
func NewClient(conn net.Conn) *Client {
	return &Client{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
}

// Close closes the connection (without detaching: QEMU then leaves the VM
// stopped until another debugger detaches or it is continued).
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) deadline(ctx context.Context) {
	if d, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(d)
	} else {
		c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
}

// Encode frames data as a packet: $data#cs with '#', '$', '}' and '*'
// escaped.
func Encode(data string) []byte {
	var b bytes.Buffer
	b.WriteByte('$')
	var sum byte
	for i := 0; i < len(data); i++ {
		ch := data[i]
		if ch == '#' || ch == '$' || ch == '}' || ch == '*' {
			b.WriteByte('}')
			sum += '}'
			ch ^= 0x20
		}
		b.WriteByte(ch)
		sum += ch
	}
	fmt.Fprintf(&b, "#%02x", sum)
	return b.Bytes()
}

// Command sends one packet and returns the reply's payload (escapes and
// run-length encoding undone). Stop-reply notifications and console
// output ("O...") that arrive first are skipped.
func (c *Client) Command(ctx context.Context, cmd string) (string, error) {
	c.deadline(ctx)
	for attempt := 0; ; attempt++ {
		if _, err := c.conn.Write(Encode(cmd)); err != nil {
			return "", fmt.Errorf("gdbstub: %s: write: %w", short(cmd), err)
		}
		ack, err := c.readAck()
		if err != nil {
			return "", fmt.Errorf("gdbstub: %s: %w", short(cmd), err)
		}
		if ack == '+' {
			break
		}
		if attempt >= 3 {
			return "", fmt.Errorf("gdbstub: %s: stub refused the packet %d times", short(cmd), attempt+1)
		}
	}
	p, err := c.ReadPacket()
	if err != nil {
		return "", fmt.Errorf("gdbstub: %s: %w", short(cmd), err)
	}
	if len(p) == 3 && p[0] == 'E' && isHex(p[1:]) {
		return "", &ErrorReply{Command: short(cmd), Code: p}
	}
	return p, nil
}

func short(cmd string) string {
	if len(cmd) > 40 {
		return cmd[:40] + "..."
	}
	return cmd
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune("0123456789abcdefABCDEF", rune(s[i])) {
			return false
		}
	}
	return true
}

// readAck reads the '+' or '-' that acknowledges a sent packet.
func (c *Client) readAck() (byte, error) {
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return 0, err
		}
		c.off++
		switch b {
		case '+', '-':
			return b, nil
		case '$':
			// An unsolicited stop reply (QEMU sends "T02thread:01;" when
			// a debugger attaches and stops the VM): take it and keep
			// waiting for the acknowledgement.
			p, err := c.readBody()
			if err != nil {
				return 0, err
			}
			if _, err := c.conn.Write([]byte{'+'}); err != nil {
				return 0, err
			}
			c.Unsolicited = append(c.Unsolicited, p)
			if len(c.Unsolicited) > 16 {
				return 0, &ProtocolError{c.off, "more than 16 unsolicited packets"}
			}
		}
		// Anything else (e.g. a stray interrupt byte) is skipped.
	}
}

// ReadPacket reads one packet, verifies its checksum, acknowledges it and
// returns its decoded payload.
func (c *Client) ReadPacket() (string, error) {
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return "", err
		}
		c.off++
		if b == '$' {
			break
		}
		if b == '%' { // notification: read and ignore
			if _, err := c.readBody(); err != nil {
				return "", err
			}
		}
	}
	p, err := c.readBody()
	if err != nil {
		return "", err
	}
	if _, err := c.conn.Write([]byte{'+'}); err != nil {
		return "", err
	}
	return p, nil
}

func (c *Client) readBody() (string, error) {
	start := c.off
	var raw []byte
	var sum byte
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return "", err
		}
		c.off++
		if b == '#' {
			break
		}
		sum += b
		raw = append(raw, b)
		if len(raw) > 2*MaxPacket {
			return "", &ProtocolError{start, fmt.Sprintf("packet longer than %d bytes", 2*MaxPacket)}
		}
	}
	var cs [2]byte
	if _, err := io.ReadFull(c.r, cs[:]); err != nil {
		return "", err
	}
	c.off += 2
	want, err := strconv.ParseUint(string(cs[:]), 16, 8)
	if err != nil {
		return "", &ProtocolError{c.off - 2, fmt.Sprintf("checksum %q is not hex", cs[:])}
	}
	if byte(want) != sum {
		return "", &ProtocolError{c.off - 2, fmt.Sprintf("checksum %02x, computed %02x", want, sum)}
	}
	return Decode(raw, start)
}

// Decode undoes the escapes ('}' x^0x20) and run-length encoding
// ('*' n: repeat the previous byte n-29 times) of a packet body; base is
// the stream offset of body[0], for errors.
func Decode(body []byte, base int64) (string, error) {
	out := make([]byte, 0, len(body))
	for i := 0; i < len(body); i++ {
		switch ch := body[i]; ch {
		case '}':
			if i+1 >= len(body) {
				return "", &ProtocolError{base + int64(i), "escape at end of packet"}
			}
			i++
			out = append(out, body[i]^0x20)
		case '*':
			if i+1 >= len(body) || len(out) == 0 {
				return "", &ProtocolError{base + int64(i), "run-length marker without a byte or count"}
			}
			i++
			n := int(body[i]) - 29
			if n < 0 {
				return "", &ProtocolError{base + int64(i), fmt.Sprintf("run-length count %d", n)}
			}
			if len(out)+n > MaxPacket {
				return "", &ProtocolError{base + int64(i), fmt.Sprintf("decoded packet longer than %d bytes", MaxPacket)}
			}
			last := out[len(out)-1]
			for k := 0; k < n; k++ {
				out = append(out, last)
			}
		default:
			out = append(out, ch)
		}
		if len(out) > MaxPacket {
			return "", &ProtocolError{base + int64(i), fmt.Sprintf("decoded packet longer than %d bytes", MaxPacket)}
		}
	}
	return string(out), nil
}

// Supported sends qSupported and returns the stub's features
// ("PacketSize" -> "1000", "qXfer:features:read" -> "+", ...).
func (c *Client) Supported(ctx context.Context) (map[string]string, error) {
	p, err := c.Command(ctx, "qSupported:xmlRegisters=i386;vContSupported+")
	if err != nil {
		return nil, err
	}
	return ParseSupported(p), nil
}

// ParseSupported parses a qSupported reply.
func ParseSupported(p string) map[string]string {
	f := map[string]string{}
	for _, item := range strings.Split(p, ";") {
		if item == "" {
			continue
		}
		if k, v, ok := strings.Cut(item, "="); ok {
			f[k] = v
			continue
		}
		if n := len(item); n > 0 && (item[n-1] == '+' || item[n-1] == '-' || item[n-1] == '?') {
			f[item[:n-1]] = item[n-1:]
			continue
		}
		f[item] = ""
	}
	return f
}

// ReadFeature reads one target description file with qXfer:features:read
// (chunked; total bounded by MaxPacket).
func (c *Client) ReadFeature(ctx context.Context, annex string) ([]byte, error) {
	var out []byte
	for {
		p, err := c.Command(ctx, fmt.Sprintf("qXfer:features:read:%s:%x,%x", annex, len(out), 0xffb))
		if err != nil {
			return nil, err
		}
		if p == "" {
			return nil, fmt.Errorf("gdbstub: qXfer:features:read %s: not supported (empty reply)", annex)
		}
		out = append(out, p[1:]...)
		if len(out) > MaxPacket {
			return nil, fmt.Errorf("gdbstub: target description %s larger than %d bytes", annex, MaxPacket)
		}
		switch p[0] {
		case 'l':
			return out, nil
		case 'm':
			if len(p) == 1 {
				return nil, fmt.Errorf("gdbstub: qXfer %s: empty 'm' chunk", annex)
			}
		default:
			return nil, fmt.Errorf("gdbstub: qXfer %s: unexpected reply %q", annex, short(p))
		}
	}
}

// Register is one register of the target description.
type Register struct {
	Name    string `json:"name"`
	BitSize int    `json:"bitsize"`
	Regnum  int    `json:"regnum"`
	Type    string `json:"type,omitempty"`
	Group   string `json:"group,omitempty"`
	Feature string `json:"feature,omitempty"`
}

// Layout reads target.xml and every file it includes and returns the
// registers in register-number order.
func (c *Client) Layout(ctx context.Context) ([]Register, error) {
	fetch := func(name string) ([]byte, error) { return c.ReadFeature(ctx, name) }
	return ParseLayout("target.xml", fetch)
}

// ParseLayout parses a target description (and, through fetch, the files it
// xi:includes, at most 4 levels and 64 files) into registers. Register
// numbers follow document order unless a regnum attribute sets them.
func ParseLayout(root string, fetch func(string) ([]byte, error)) ([]Register, error) {
	var regs []Register
	next := 0
	files := 0
	var walk func(name string, depth int) error
	walk = func(name string, depth int) error {
		if depth > 4 {
			return fmt.Errorf("gdbstub: target description: includes nested deeper than 4 at %s", name)
		}
		if files++; files > 64 {
			return fmt.Errorf("gdbstub: target description: more than 64 files")
		}
		b, err := fetch(name)
		if err != nil {
			return err
		}
		dec := xml.NewDecoder(bytes.NewReader(b))
		dec.Strict = false
		feature := ""
		for {
			tok, err := dec.Token()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("gdbstub: target description %s at byte %d: %w", name, dec.InputOffset(), err)
			}
			se, ok := tok.(xml.StartElement)
			if !ok {
				continue
			}
			attr := func(k string) string {
				for _, a := range se.Attr {
					if a.Name.Local == k {
						return a.Value
					}
				}
				return ""
			}
			switch se.Name.Local {
			case "feature":
				feature = attr("name")
			case "include":
				if href := attr("href"); href != "" {
					if err := walk(href, depth+1); err != nil {
						return err
					}
				}
			case "reg":
				r := Register{Name: attr("name"), Type: attr("type"), Group: attr("group"), Feature: feature, Regnum: next}
				bs, err := strconv.Atoi(attr("bitsize"))
				if err != nil || bs <= 0 || bs > 4096 || bs%8 != 0 {
					return fmt.Errorf("gdbstub: target description %s: register %q: bad bitsize %q", name, r.Name, attr("bitsize"))
				}
				r.BitSize = bs
				if rn := attr("regnum"); rn != "" {
					n, err := strconv.Atoi(rn)
					if err != nil || n < 0 || n > 4096 {
						return fmt.Errorf("gdbstub: target description %s: register %q: bad regnum %q", name, r.Name, rn)
					}
					r.Regnum = n
				}
				next = r.Regnum + 1
				regs = append(regs, r)
			}
		}
	}
	if err := walk(root, 0); err != nil {
		return nil, err
	}
	// Sort by regnum (stable: document order for equal numbers).
	for i := 1; i < len(regs); i++ {
		for j := i; j > 0 && regs[j].Regnum < regs[j-1].Regnum; j-- {
			regs[j], regs[j-1] = regs[j-1], regs[j]
		}
	}
	return regs, nil
}

// Threads lists the stub's thread ids (qfThreadInfo / qsThreadInfo). In
// QEMU each vCPU is a thread: id = CPU index + 1.
func (c *Client) Threads(ctx context.Context) ([]string, error) {
	var ids []string
	cmd := "qfThreadInfo"
	for i := 0; i < 4096; i++ {
		p, err := c.Command(ctx, cmd)
		if err != nil {
			return nil, err
		}
		if p == "l" || p == "" {
			return ids, nil
		}
		if p[0] != 'm' {
			return nil, fmt.Errorf("gdbstub: %s: unexpected reply %q", cmd, short(p))
		}
		for _, id := range strings.Split(p[1:], ",") {
			if id != "" {
				ids = append(ids, id)
			}
		}
		cmd = "qsThreadInfo"
	}
	return nil, errors.New("gdbstub: thread list does not end")
}

// ThreadExtraInfo returns qThreadExtraInfo for a thread (QEMU: "CPU#0 [running]").
func (c *Client) ThreadExtraInfo(ctx context.Context, tid string) (string, error) {
	p, err := c.Command(ctx, "qThreadExtraInfo,"+tid)
	if err != nil {
		return "", err
	}
	b, err := hex.DecodeString(p)
	if err != nil {
		return "", fmt.Errorf("gdbstub: qThreadExtraInfo,%s: reply is not hex: %w", tid, err)
	}
	return string(b), nil
}

// Value is one register's value.
type Value struct {
	Name string `json:"name"`
	// Hex is the value as a big-endian hex number (the target is little
	// endian; the bytes are reversed), "" when unavailable.
	Hex         string `json:"hex,omitempty"`
	Unavailable bool   `json:"unavailable,omitempty"`
}

// ReadRegisters selects thread tid (Hg) and reads its registers (g),
// decoded with layout.
func (c *Client) ReadRegisters(ctx context.Context, tid string, layout []Register) ([]Value, error) {
	p, err := c.Command(ctx, "Hg"+tid)
	if err != nil {
		return nil, err
	}
	if p != "OK" {
		return nil, fmt.Errorf("gdbstub: Hg%s: reply %q", tid, short(p))
	}
	p, err = c.Command(ctx, "g")
	if err != nil {
		return nil, err
	}
	return DecodeRegisters(p, layout)
}

// DecodeRegisters splits a 'g' reply (hex, target byte order
// little-endian, "xx" for unavailable bytes) by layout. Registers the
// reply does not reach are returned as unavailable.
func DecodeRegisters(p string, layout []Register) ([]Value, error) {
	if len(p)%2 != 0 {
		return nil, &ProtocolError{int64(len(p)), "odd number of hex digits in a g reply"}
	}
	out := make([]Value, 0, len(layout))
	pos := 0
	for _, r := range layout {
		n := r.BitSize / 8 * 2
		v := Value{Name: r.Name}
		if pos+n > len(p) {
			v.Unavailable = true
			out = append(out, v)
			pos = len(p)
			continue
		}
		field := p[pos : pos+n]
		pos += n
		if strings.ContainsAny(field, "xX") {
			v.Unavailable = true
			out = append(out, v)
			continue
		}
		b, err := hex.DecodeString(field)
		if err != nil {
			return nil, &ProtocolError{int64(pos - n), fmt.Sprintf("register %s: %v", r.Name, err)}
		}
		for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		v.Hex = hex.EncodeToString(b)
		out = append(out, v)
	}
	return out, nil
}

// Detach sends D: QEMU removes breakpoints and resumes the VM.
func (c *Client) Detach(ctx context.Context) error {
	p, err := c.Command(ctx, "D")
	if err != nil {
		return err
	}
	if p != "OK" {
		return fmt.Errorf("gdbstub: detach: reply %q", short(p))
	}
	return nil
}

// StopReason sends '?' and returns the stop reply (e.g. "T05thread:01;").
func (c *Client) StopReason(ctx context.Context) (string, error) {
	return c.Command(ctx, "?")
}

// CPU is one vCPU's registers read through the stub.
type CPU struct {
	Thread    string  `json:"thread"`
	Info      string  `json:"info,omitempty"`
	Registers []Value `json:"registers,omitempty"`
	Error     string  `json:"error,omitempty"`
}

// Snapshot is everything ReadAll collects.
type Snapshot struct {
	Supported map[string]string `json:"supported"`
	Stop      string            `json:"stop,omitempty"`
	Layout    []Register        `json:"layout"`
	CPUs      []CPU             `json:"cpus"`
}

// ReadAll runs the whole sequence: qSupported, '?', the layout, the thread
// list and, per thread, qThreadExtraInfo + Hg + g. A failure on one thread
// is recorded in its CPU entry and the others are still read. It does not
// detach.
func (c *Client) ReadAll(ctx context.Context) (*Snapshot, error) {
	s := &Snapshot{}
	var err error
	if s.Supported, err = c.Supported(ctx); err != nil {
		return s, err
	}
	if s.Stop, err = c.StopReason(ctx); err != nil {
		return s, err
	}
	if s.Layout, err = c.Layout(ctx); err != nil {
		return s, err
	}
	tids, err := c.Threads(ctx)
	if err != nil {
		return s, err
	}
	for _, tid := range tids {
		cpu := CPU{Thread: tid}
		if info, err := c.ThreadExtraInfo(ctx, tid); err == nil {
			cpu.Info = info
		}
		regs, err := c.ReadRegisters(ctx, tid, s.Layout)
		if err != nil {
			cpu.Error = err.Error()
			if ctx.Err() != nil {
				s.CPUs = append(s.CPUs, cpu)
				return s, err
			}
		}
		cpu.Registers = regs
		s.CPUs = append(s.CPUs, cpu)
	}
	return s, nil
}
