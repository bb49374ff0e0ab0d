// Package qmp is acpidiag's QMP client: one JSON object per line over
// QEMU's monitor socket, commands tagged with ids and bounded by timeouts,
// events buffered and counted when dropped, reconnection; it implements
// go-qemu's goqmp.Monitor so go-qemu's typed API runs on top of it.
package qmp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goqmp "github.com/digitalocean/go-qemu/qmp"
)

// Why acpidiag has its own QMP transport. go-qemu's goqmp.SocketMonitor (the
// pinned version) has gaps that would leak into every caller:
//   - no timeout on the greeting/capabilities handshake (a socket that
//     accepts but never greets hangs Connect forever);
//   - no per-command timeout or context (Run blocks forever if QEMU hangs);
//   - its events channel is unbuffered: Run blocks if nobody drains events;
//   - a bufio.Scanner with the default 64 KiB token limit: one larger reply
//     (query-qmp-schema is ~150 KiB on QEMU 7.2; HMP "info registers -a" on
//     many vCPUs) ends the reader goroutine and every later command fails;
//   - the handshake's json.Decoder may buffer bytes the reader never sees;
//   - responses are matched by order, so a reply that arrives after its
//     caller gave up is handed to the next command.
// None of this can be configured from outside, so QMP speaks the protocol
// itself (one JSON object per line, commands tagged with "id"), reuses
// go-qemu's wire types (goqmp.Command, goqmp.Event, goqmp.Version), and
// implements goqmp.Monitor so go-qemu's generated typed API (qmp/raw) runs on
// top of it.

// Options tunes a QMP session. Zero values select the defaults.
type Options struct {
	// DialTimeout bounds connect + greeting + capabilities negotiation
	// (default 5 s).
	DialTimeout time.Duration
	// CommandTimeout bounds a command whose context has no deadline
	// (default 30 s).
	CommandTimeout time.Duration
	// EventBuffer is how many events are kept for the reader of Events
	// before the oldest are dropped (default 1024).
	EventBuffer int
	// MaxMessage is the longest QMP message accepted, in bytes (default
	// 64 MiB). A longer one ends the connection with a *ProtocolError.
	MaxMessage int
	// AutoReconnect redials the socket on the next command after the
	// connection was lost (e.g. QEMU restarted with the same socket).
	AutoReconnect bool
}

func (o Options) withDefaults() Options {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 30 * time.Second
	}
	if o.EventBuffer <= 0 {
		o.EventBuffer = 1024
	}
	if o.MaxMessage <= 0 {
		o.MaxMessage = 64 << 20
	}
	return o
}

// ErrDisconnected is wrapped by errors of commands that could not complete
// because the QMP connection is (or went) down.
var ErrDisconnected = errors.New("qmp: disconnected")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("qmp: session closed")

// CommandError is an error reply from QEMU to a command.
type CommandError struct {
	Command string
	Class   string // QMP error class, e.g. "GenericError", "CommandNotFound"
	Desc    string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("qmp: %s: %s: %s", e.Command, e.Class, e.Desc)
}

// ProtocolError reports bytes from QEMU that are not valid QMP. Offset is
// the byte offset in the connection's input stream where the bad message
// starts.
type ProtocolError struct {
	Offset int64
	Msg    string
	Err    error
}

func (e *ProtocolError) Error() string {
	s := fmt.Sprintf("qmp: protocol error at stream offset %d: %s", e.Offset, e.Msg)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// Event names qemuhook gives meaning to. Any other event is delivered with
// its raw name and data.
const (
	EventGuestPanicked = "GUEST_PANICKED"
	EventShutdown      = "SHUTDOWN"
	EventStop          = "STOP"
	EventResume        = "RESUME"
	EventReset         = "RESET"
	EventWatchdog      = "WATCHDOG"
	EventPowerdown     = "POWERDOWN"
	// EventDisconnected is synthesised by this client (not QEMU) when the QMP
	// connection is lost; Data holds {"error": "..."}.
	EventDisconnected = "ACPIDIAG_DISCONNECTED"
	// EventReconnected is synthesised when AutoReconnect or Reconnect
	// established a new connection.
	EventReconnected = "ACPIDIAG_RECONNECTED"
)

// Event is one QMP event with the fields qemuhook uses decoded.
type Event struct {
	// Name is the QMP event name (EventGuestPanicked, ...).
	Name string `json:"event"`
	// Time is QEMU's timestamp of the event (host clock).
	Time time.Time `json:"time"`
	// Action is data.action of GUEST_PANICKED ("pause", "poweroff", "run")
	// and WATCHDOG ("reset", "pause", ...).
	Action string `json:"action,omitempty"`
	// Reason is data.reason of SHUTDOWN and RESET (e.g. "guest-shutdown",
	// "guest-reset", "host-qmp-quit", "guest-panic").
	Reason string `json:"reason,omitempty"`
	// Guest is data.guest of SHUTDOWN and RESET: the guest asked for it.
	Guest bool `json:"guest,omitempty"`
	// Data is the event's raw data object.
	Data json.RawMessage `json:"data,omitempty"`
}

// message is any QMP message from QEMU.
type message struct {
	QMP *struct {
		Version      goqmp.Version `json:"version"`
		Capabilities []string      `json:"capabilities"`
	} `json:"QMP"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	ID json.RawMessage `json:"id"`
}

// DecodeMessage decodes one QMP message (a JSON object) from QEMU and
// classifies it: greeting, event (returned decoded in ev), or command
// reply (id is the command id, 0 if none; ret the return value or qerr the
// error). It never panics on malformed input.
func DecodeMessage(line []byte) (kind MessageKind, ev Event, id uint64, ret json.RawMessage, qerr *CommandError, err error) {
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		return 0, Event{}, 0, nil, nil, err
	}
	switch {
	case m.QMP != nil:
		return MessageGreeting, Event{}, 0, nil, nil, nil
	case m.Event != "":
		ev = Event{Name: m.Event, Data: m.Data}
		if m.Timestamp != nil && m.Timestamp.Seconds >= 0 && m.Timestamp.Microseconds >= 0 && m.Timestamp.Microseconds < 1e6 {
			ev.Time = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)
		}
		if len(m.Data) > 0 {
			var d struct {
				Action json.RawMessage `json:"action"`
				Reason json.RawMessage `json:"reason"`
				Guest  json.RawMessage `json:"guest"`
			}
			if json.Unmarshal(m.Data, &d) == nil {
				_ = json.Unmarshal(d.Action, &ev.Action)
				_ = json.Unmarshal(d.Reason, &ev.Reason)
				_ = json.Unmarshal(d.Guest, &ev.Guest)
			}
		}
		return MessageEvent, ev, 0, nil, nil, nil
	case m.Return != nil || m.Error != nil:
		if len(m.ID) > 0 {
			var s string
			if json.Unmarshal(m.ID, &id) != nil {
				if json.Unmarshal(m.ID, &s) == nil {
					id, _ = strconv.ParseUint(s, 10, 64)
				}
			}
		}
		if m.Error != nil {
			return MessageReply, Event{}, id, nil, &CommandError{Class: m.Error.Class, Desc: m.Error.Desc}, nil
		}
		return MessageReply, Event{}, id, m.Return, nil, nil
	}
	return 0, Event{}, 0, nil, nil, errors.New("not a greeting, event or reply")
}

// MessageKind classifies a QMP message.
type MessageKind int

// Message kinds returned by DecodeMessage.
const (
	MessageGreeting MessageKind = iota + 1
	MessageEvent
	MessageReply
)

type reply struct {
	ret  json.RawMessage
	qerr *CommandError
}

// conn is one QMP connection.
type conn struct {
	c       net.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	pending map[uint64]chan reply
	done    chan struct{}
	err     error // set before done is closed
}

func (cn *conn) fail(err error) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	select {
	case <-cn.done:
		return
	default:
	}
	cn.err = err
	close(cn.done)
	cn.c.Close()
}

// Client is a QMP session with one QEMU: commands with timeouts, a
// continuously drained bounded event stream, reconnection. It is safe for
// concurrent use.
type Client struct {
	path string
	opts Options

	mu      sync.Mutex
	cur     *conn
	version goqmp.Version
	closed  bool

	nextID  atomic.Uint64
	events  chan Event
	dropped atomic.Uint64
	readers sync.WaitGroup
	evMu    sync.Mutex // serialises pushes (drop-oldest) and close
}

// Dial connects to the QMP unix socket at path, reads the greeting and
// negotiates capabilities, all within opts.DialTimeout (and ctx).
func Dial(ctx context.Context, path string, opts Options) (*Client, error) {
	opts = opts.withDefaults()
	q := &Client{path: path, opts: opts, events: make(chan Event, opts.EventBuffer)}
	cn, v, err := q.dial(ctx)
	if err != nil {
		return nil, err
	}
	q.cur, q.version = cn, v
	return q, nil
}

// dial opens and handshakes one connection and starts its reader.
func (q *Client) dial(ctx context.Context) (*conn, goqmp.Version, error) {
	ctx, cancel := context.WithTimeout(ctx, q.opts.DialTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", q.path)
	if err != nil {
		return nil, goqmp.Version{}, fmt.Errorf("qmp: dial %s: %w", q.path, err)
	}
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	// Unblock reads if ctx is cancelled before the deadline.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	br := bufio.NewReaderSize(c, 64<<10)
	lr := &lineReader{r: br, max: q.opts.MaxMessage}
	fail := func(what string, err error) (*conn, goqmp.Version, error) {
		c.Close()
		var ne net.Error
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		} else if errors.As(err, &ne) && ne.Timeout() {
			err = fmt.Errorf("%w (%w)", err, context.DeadlineExceeded)
		}
		return nil, goqmp.Version{}, fmt.Errorf("qmp: %s on %s: %w", what, q.path, err)
	}
	line, err := lr.next()
	if err != nil {
		return fail("waiting for the QMP greeting", err)
	}
	var m message
	if err := json.Unmarshal(line, &m); err != nil || m.QMP == nil {
		return fail("greeting", &ProtocolError{Offset: lr.start, Msg: fmt.Sprintf("not a QMP greeting: %.80q", line), Err: err})
	}
	version := m.QMP.Version
	if _, err := c.Write([]byte(`{"execute":"qmp_capabilities","id":0}` + "\n")); err != nil {
		return fail("sending qmp_capabilities", err)
	}
	for {
		line, err := lr.next()
		if err != nil {
			return fail("waiting for the qmp_capabilities reply", err)
		}
		kind, _, _, _, qerr, err := DecodeMessage(line)
		if err != nil {
			return fail("capabilities reply", &ProtocolError{Offset: lr.start, Msg: "bad message", Err: err})
		}
		if kind == MessageReply {
			if qerr != nil {
				qerr.Command = "qmp_capabilities"
				return fail("negotiating capabilities", qerr)
			}
			break
		}
	}
	c.SetDeadline(time.Time{})
	cn := &conn{c: c, pending: map[uint64]chan reply{}, done: make(chan struct{})}
	// Add under q.mu with the closed check, so Close's Wait never races
	// with an Add from a concurrent Reconnect.
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		c.Close()
		return nil, goqmp.Version{}, ErrClosed
	}
	q.readers.Add(1)
	q.mu.Unlock()
	go q.read(cn, lr)
	return cn, version, nil
}

// lineReader reads newline-terminated messages of bounded length.
type lineReader struct {
	r     *bufio.Reader
	max   int
	off   int64 // bytes consumed
	start int64 // offset of the last message returned
	buf   []byte
}

func (l *lineReader) next() ([]byte, error) {
	for {
		l.start = l.off
		l.buf = l.buf[:0]
		for {
			chunk, err := l.r.ReadSlice('\n')
			l.off += int64(len(chunk))
			if len(l.buf)+len(chunk) > l.max {
				return nil, &ProtocolError{Offset: l.start, Msg: fmt.Sprintf("message longer than the %d-byte limit (Options.MaxMessage)", l.max)}
			}
			l.buf = append(l.buf, chunk...)
			if err == nil {
				break
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF && len(bytes.TrimSpace(l.buf)) > 0 {
				return nil, &ProtocolError{Offset: l.start, Msg: "connection closed inside a message", Err: io.ErrUnexpectedEOF}
			}
			return nil, err
		}
		line := bytes.TrimSpace(l.buf)
		if len(line) > 0 {
			return line, nil
		}
	}
}

// read is the connection's reader: replies go to their waiter, events to
// the bounded buffer. It ends when the connection fails.
func (q *Client) read(cn *conn, lr *lineReader) {
	defer q.readers.Done()
	for {
		line, err := lr.next()
		if err != nil {
			cn.fail(err)
			q.push(Event{Name: EventDisconnected, Time: time.Now(), Data: mustJSON(map[string]string{"error": err.Error()})})
			return
		}
		kind, ev, id, ret, qerr, err := DecodeMessage(line)
		if err != nil {
			err = &ProtocolError{Offset: lr.start, Msg: fmt.Sprintf("bad message %.80q", line), Err: err}
			cn.fail(err)
			q.push(Event{Name: EventDisconnected, Time: time.Now(), Data: mustJSON(map[string]string{"error": err.Error()})})
			return
		}
		switch kind {
		case MessageEvent:
			q.push(ev)
		case MessageReply:
			cn.mu.Lock()
			ch := cn.pending[id]
			delete(cn.pending, id)
			cn.mu.Unlock()
			if ch != nil {
				ch <- reply{ret: ret, qerr: qerr} // buffered, never blocks
			}
			// A reply nobody waits for (its caller timed out) is dropped.
		}
	}
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// push adds an event, dropping the oldest one when the buffer is full.
func (q *Client) push(ev Event) {
	q.evMu.Lock()
	defer q.evMu.Unlock()
	if q.events == nil {
		return
	}
	for {
		select {
		case q.events <- ev:
			return
		default:
		}
		select {
		case <-q.events:
			q.dropped.Add(1)
		default:
		}
	}
}

// Events returns the session's event stream. It is buffered
// (Options.EventBuffer): when the reader falls behind, the oldest
// events are dropped and counted (Dropped). It is closed by Close.
// Connection loss and re-establishment appear as EventDisconnected and
// EventReconnected.
func (q *Client) Events() <-chan Event { return q.events }

// Dropped returns how many events were dropped because the buffer was full.
func (q *Client) Dropped() uint64 { return q.dropped.Load() }

// Version returns the QEMU version from the last greeting.
func (q *Client) Version() goqmp.Version {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.version
}

// Done returns a channel closed when the current connection is lost.
func (q *Client) Done() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cur.done
}

// Err returns why the current connection was lost, or nil.
func (q *Client) Err() error {
	q.mu.Lock()
	cn := q.cur
	q.mu.Unlock()
	select {
	case <-cn.done:
		return cn.err
	default:
		return nil
	}
}

// Reconnect drops the current connection (if any) and dials the socket
// again, e.g. after QEMU was restarted.
func (q *Client) Reconnect(ctx context.Context) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	old := q.cur
	q.mu.Unlock()
	old.fail(fmt.Errorf("%w: reconnecting", ErrDisconnected))
	cn, v, err := q.dial(ctx)
	if err != nil {
		return err
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		cn.fail(ErrClosed)
		return ErrClosed
	}
	q.cur, q.version = cn, v
	q.mu.Unlock()
	q.push(Event{Name: EventReconnected, Time: time.Now()})
	return nil
}

// conn returns a live connection, redialling if allowed.
func (q *Client) conn(ctx context.Context) (*conn, error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, ErrClosed
	}
	cn := q.cur
	q.mu.Unlock()
	select {
	case <-cn.done:
		if !q.opts.AutoReconnect {
			return nil, fmt.Errorf("%w: %w", ErrDisconnected, cn.err)
		}
		if err := q.Reconnect(ctx); err != nil {
			return nil, fmt.Errorf("%w: reconnect: %w", ErrDisconnected, err)
		}
		q.mu.Lock()
		cn = q.cur
		q.mu.Unlock()
	default:
	}
	return cn, nil
}

// Execute runs QMP command name with args (nil for none; any value that
// marshals to a JSON object) and unmarshals the reply's "return" into out
// (nil to ignore). Without a deadline in ctx, Options.CommandTimeout
// applies. QEMU's error replies are *CommandError; a lost connection
// wraps ErrDisconnected; a timeout wraps context.DeadlineExceeded.
func (q *Client) Execute(ctx context.Context, name string, args any, out any) error {
	raw, err := q.ExecuteRaw(ctx, name, args)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("qmp: %s: decoding reply: %w", name, err)
		}
	}
	return nil
}

// ExecuteRaw is Execute returning the raw "return" value.
func (q *Client) ExecuteRaw(ctx context.Context, name string, args any) (json.RawMessage, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, q.opts.CommandTimeout)
		defer cancel()
	}
	cn, err := q.conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("qmp: %s: %w", name, err)
	}
	id := q.nextID.Add(1)
	cmd := struct {
		goqmp.Command
		ID uint64 `json:"id"`
	}{goqmp.Command{Execute: name, Args: args}, id}
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("qmp: %s: encoding arguments: %w", name, err)
	}
	return q.roundTrip(ctx, cn, name, id, append(b, '\n'))
}

func (q *Client) roundTrip(ctx context.Context, cn *conn, name string, id uint64, b []byte) (json.RawMessage, error) {
	ch := make(chan reply, 1)
	cn.mu.Lock()
	select {
	case <-cn.done:
		cn.mu.Unlock()
		return nil, fmt.Errorf("qmp: %s: %w: %w", name, ErrDisconnected, cn.err)
	default:
	}
	cn.pending[id] = ch
	cn.mu.Unlock()
	defer func() {
		cn.mu.Lock()
		delete(cn.pending, id)
		cn.mu.Unlock()
	}()
	cn.wmu.Lock()
	dl, _ := ctx.Deadline()
	cn.c.SetWriteDeadline(dl)
	_, err := cn.c.Write(b)
	cn.wmu.Unlock()
	if err != nil {
		cn.fail(err)
		return nil, fmt.Errorf("qmp: %s: %w: %w", name, ErrDisconnected, err)
	}
	select {
	case r := <-ch:
		if r.qerr != nil {
			r.qerr.Command = name
			return nil, r.qerr
		}
		return r.ret, nil
	case <-cn.done:
		return nil, fmt.Errorf("qmp: %s: %w: %w", name, ErrDisconnected, cn.err)
	case <-ctx.Done():
		return nil, fmt.Errorf("qmp: %s: no reply: %w", name, ctx.Err())
	}
}

// HMP runs a human monitor command (human-monitor-command) and returns
// its output.
func (q *Client) HMP(ctx context.Context, cmdline string) (string, error) {
	var out string
	err := q.Execute(ctx, "human-monitor-command", map[string]string{"command-line": cmdline}, &out)
	return out, err
}

// Close ends the session: the connection is closed, pending commands fail
// with ErrClosed, and the Events channel is closed once the reader has
// stopped.
func (q *Client) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	cn := q.cur
	q.mu.Unlock()
	cn.fail(ErrClosed)
	q.readers.Wait()
	q.evMu.Lock()
	close(q.events)
	q.evMu.Unlock()
	return nil
}

// Monitor adapts the session to go-qemu's goqmp.Monitor interface, so the
// generated typed API (qmp/raw.NewMonitor) and qemu.Domain run over it
// with qemuhook's timeouts and bounded messages. Run uses
// Options.CommandTimeout; Events returns the raw go-qemu events (only
// call one of Events() here and QMP.Events).
func (q *Client) Monitor() goqmp.Monitor { return monitor{q} }

type monitor struct{ q *Client }

func (m monitor) Connect() error    { return nil }
func (m monitor) Disconnect() error { return m.q.Close() }

func (m monitor) Run(command []byte) ([]byte, error) {
	var cmd struct {
		Execute string          `json:"execute"`
		Args    json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal(command, &cmd); err != nil {
		return nil, fmt.Errorf("qmp: Run: bad command: %w", err)
	}
	var args any
	if len(cmd.Args) > 0 {
		args = cmd.Args
	}
	ret, err := m.q.ExecuteRaw(context.Background(), cmd.Execute, args)
	if err != nil {
		return nil, err
	}
	// go-qemu callers unmarshal {"return": ...}.
	return json.Marshal(struct {
		Return json.RawMessage `json:"return"`
	}{ret})
}

func (m monitor) Events(ctx context.Context) (<-chan goqmp.Event, error) {
	out := make(chan goqmp.Event)
	go func() {
		defer close(out)
		for ev := range m.q.Events() {
			var e goqmp.Event
			e.Event = ev.Name
			_ = json.Unmarshal(ev.Data, &e.Data)
			if !ev.Time.IsZero() {
				e.Timestamp.Seconds = ev.Time.Unix()
				e.Timestamp.Microseconds = int64(ev.Time.Nanosecond() / 1000)
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
