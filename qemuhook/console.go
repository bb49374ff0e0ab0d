package qemuhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// DefaultConsoleBuffer is the ring buffer size of a Console (1 MiB: a
// SysRq-t dump at loglevel 7 is ~40 KB per vCPU, PLATFORM.md).
const DefaultConsoleBuffer = 1 << 20

// Console keeps the guest's serial output: a reader stays attached to
// QEMU's serial socket (without one, QEMU drops the guest's output), and
// the last bytes are kept in a ring buffer. Positions in the stream are
// absolute byte counts ("marks"), so a caller can take a Mark, trigger
// something, and wait for the output that follows.
type Console struct {
	conn net.Conn

	mu      sync.Mutex
	buf     []byte // ring storage, len = capacity
	total   int64  // bytes received since the start
	changed chan struct{}
	err     error
	done    chan struct{}
	tee     io.Writer
}

// DialConsole connects to QEMU's serial unix socket at path (retrying
// until ctx ends while QEMU has not created it) and starts reading.
// capacity is the ring size (0: DefaultConsoleBuffer).
func DialConsole(ctx context.Context, path string, capacity int) (*Console, error) {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return NewConsole(c, capacity), nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qemuhook: console %s: %w", path, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// NewConsole reads the serial stream from conn until it ends or Close.
func NewConsole(conn net.Conn, capacity int) *Console {
	if capacity <= 0 {
		capacity = DefaultConsoleBuffer
	}
	c := &Console{conn: conn, buf: make([]byte, capacity), changed: make(chan struct{}), done: make(chan struct{})}
	go c.read()
	return c
}

// SetTee copies every byte received from now on to w (nil to stop), e.g.
// to echo the console to a terminal. w must not block for long.
func (c *Console) SetTee(w io.Writer) {
	c.mu.Lock()
	c.tee = w
	c.mu.Unlock()
}

func (c *Console) read() {
	b := make([]byte, 32<<10)
	for {
		n, err := c.conn.Read(b)
		if n > 0 {
			c.append(b[:n])
		}
		if err != nil {
			c.mu.Lock()
			if errors.Is(err, net.ErrClosed) {
				err = io.EOF
			}
			c.err = err
			close(c.changed)
			c.mu.Unlock()
			close(c.done)
			return
		}
	}
}

func (c *Console) append(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tee != nil {
		c.tee.Write(p)
	}
	capacity := int64(len(c.buf))
	if int64(len(p)) > capacity {
		c.total += int64(len(p)) - capacity
		p = p[int64(len(p))-capacity:]
	}
	for len(p) > 0 {
		off := c.total % capacity
		n := copy(c.buf[off:], p)
		p = p[n:]
		c.total += int64(n)
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// Mark returns the current end of the stream.
func (c *Console) Mark() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Since returns the bytes received after mark that are still in the ring,
// and how many bytes after mark were already overwritten (lost).
func (c *Console) Since(mark int64) (out []byte, lost int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sinceLocked(mark)
}

func (c *Console) sinceLocked(mark int64) ([]byte, int64) {
	capacity := int64(len(c.buf))
	if mark < 0 {
		mark = 0
	}
	if mark > c.total {
		return nil, 0
	}
	var lost int64
	if oldest := c.total - capacity; oldest > mark {
		lost = oldest - mark
		mark = oldest
	}
	out := make([]byte, 0, c.total-mark)
	for pos := mark; pos < c.total; {
		off := pos % capacity
		end := off + (c.total - pos)
		if end > capacity {
			end = capacity
		}
		out = append(out, c.buf[off:end]...)
		pos += end - off
	}
	return out, lost
}

// Tail returns the last n bytes received (fewer if the ring holds less).
func (c *Console) Tail(n int) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out, _ := c.sinceLocked(c.total - int64(n))
	return out
}

// ErrConsoleClosed is returned by waits on a console whose stream ended.
var ErrConsoleClosed = errors.New("qemuhook: console stream ended")

// WaitFor waits until the output after mark contains pattern and returns
// that output (up to the end of what has arrived). On ctx end or stream
// end it returns what arrived with the error.
func (c *Console) WaitFor(ctx context.Context, mark int64, pattern string) ([]byte, error) {
	p := []byte(pattern)
	for {
		c.mu.Lock()
		out, _ := c.sinceLocked(mark)
		ch, err := c.changed, c.err
		c.mu.Unlock()
		if bytes.Contains(out, p) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("%w (%w) while waiting for %q", ErrConsoleClosed, err, pattern)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return out, fmt.Errorf("qemuhook: console: %q not seen: %w", pattern, ctx.Err())
		}
	}
}

// waitOutput waits until any byte arrived after mark.
func (c *Console) waitOutput(ctx context.Context, mark int64) error {
	for {
		c.mu.Lock()
		have, ch, err := c.total > mark, c.changed, c.err
		c.mu.Unlock()
		if have {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w (%w)", ErrConsoleClosed, err)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("qemuhook: console: no output: %w", ctx.Err())
		}
	}
}

// WaitQuiet waits for output after mark, then until no byte arrived for
// quiet, and returns the output. If nothing arrives before ctx ends, it
// returns an error wrapping ctx's.
func (c *Console) WaitQuiet(ctx context.Context, mark int64, quiet time.Duration) ([]byte, error) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		c.mu.Lock()
		out, _ := c.sinceLocked(mark)
		ch, err := c.changed, c.err
		c.mu.Unlock()
		if err != nil {
			if len(out) > 0 {
				return out, nil
			}
			return out, fmt.Errorf("%w (%w)", ErrConsoleClosed, err)
		}
		if len(out) > 0 {
			t.Reset(quiet)
		}
		select {
		case <-ch:
		case <-t.C:
			return out, nil
		case <-ctx.Done():
			if len(out) > 0 {
				return out, nil
			}
			return nil, fmt.Errorf("qemuhook: console: no output: %w", ctx.Err())
		}
	}
}

// Write sends bytes to the guest's serial port.
func (c *Console) Write(b []byte) (int, error) { return c.conn.Write(b) }

// Done is closed when the stream has ended.
func (c *Console) Done() <-chan struct{} { return c.done }

// Close disconnects from the serial socket and waits for the reader.
func (c *Console) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}
