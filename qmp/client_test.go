package qmp

import (
	"bufio"
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// realQMPLines are messages captured from QEMU 7.2 (this machine).
var realQMPLines = []string{
	`{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}`,
	`{"return": {}, "id": 0}`,
	`{"timestamp": {"seconds": 1763790000, "microseconds": 123456}, "event": "STOP"}`,
	`{"timestamp": {"seconds": 1763790001, "microseconds": 5}, "event": "RESUME"}`,
	`{"timestamp": {"seconds": 1763790002, "microseconds": 77}, "event": "GUEST_PANICKED", "data": {"action": "run"}}`,
	`{"timestamp": {"seconds": 1763790002, "microseconds": 900}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-reset"}}`,
	`{"timestamp": {"seconds": 1763790003, "microseconds": 1}, "event": "RESET", "data": {"guest": false, "reason": "host-qmp-system-reset"}}`,
	`{"return": {"status": "running", "singlestep": false, "running": true}, "id": 7}`,
	`{"id": 9, "error": {"class": "CommandNotFound", "desc": "The command no-such-command has not been found"}}`,
}

func TestDecodeMessage(t *testing.T) {
	kind, _, _, _, _, err := DecodeMessage([]byte(realQMPLines[0]))
	require.NoError(t, err)
	assert.Equal(t, MessageGreeting, kind)
	kind, ev, _, _, _, err := DecodeMessage([]byte(realQMPLines[4]))
	require.NoError(t, err)
	assert.Equal(t, MessageEvent, kind)
	assert.Equal(t, EventGuestPanicked, ev.Name)
	assert.Equal(t, "run", ev.Action)
	assert.Equal(t, time.Unix(1763790002, 77000), ev.Time)
	_, ev, _, _, _, _ = DecodeMessage([]byte(realQMPLines[5]))
	assert.Equal(t, "guest-reset", ev.Reason)
	assert.True(t, ev.Guest)
	kind, _, id, ret, qerr, err := DecodeMessage([]byte(realQMPLines[7]))
	require.NoError(t, err)
	assert.Equal(t, MessageReply, kind)
	assert.Equal(t, uint64(7), id)
	assert.Nil(t, qerr)
	assert.Contains(t, string(ret), "running")
	_, _, id, _, qerr, _ = DecodeMessage([]byte(realQMPLines[8]))
	assert.Equal(t, uint64(9), id)
	require.NotNil(t, qerr)
	assert.Equal(t, "CommandNotFound", qerr.Class)
	for _, bad := range []string{``, `{}`, `[]`, `{"event": 5}`, `nul`, `{"timestamp": {"seconds": -1, "microseconds": 99999999}, "event": "X"}`} {
		kind, ev, _, _, _, err := DecodeMessage([]byte(bad))
		if err == nil {
			assert.Equal(t, MessageEvent, kind, bad)
			assert.True(t, ev.Time.IsZero(), "bad timestamp kept: %q", bad)
		}
	}
}

// FuzzDecodeMessage: QMP bytes come from QEMU (and through it from
// anything the guest can make QEMU say); decoding never panics and every
// classified message is consistent.
func FuzzDecodeMessage(f *testing.F) {
	for _, l := range realQMPLines {
		f.Add([]byte(l))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, ev, _, ret, qerr, err := DecodeMessage(b)
		if err != nil {
			return
		}
		switch kind {
		case MessageEvent:
			if ev.Name == "" {
				t.Fatal("event without a name")
			}
		case MessageReply:
			if ret == nil && qerr == nil {
				t.Fatal("reply without return or error")
			}
		case MessageGreeting:
		default:
			t.Fatalf("unknown kind %d", kind)
		}
	})
}

func BenchmarkDecodeMessageEvent(b *testing.B) {
	line := []byte(realQMPLines[4])
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if _, _, _, _, _, err := DecodeMessage(line); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLineReader(b *testing.B) {
	var in bytes.Buffer
	for i := 0; i < 1000; i++ {
		in.WriteString(realQMPLines[2] + "\r\n")
	}
	data := in.Bytes()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		lr := &lineReader{r: bufio.NewReaderSize(bytes.NewReader(data), 64<<10), max: 64 << 20}
		for n := 0; n < 1000; n++ {
			if _, err := lr.next(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
