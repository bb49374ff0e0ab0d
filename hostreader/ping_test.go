package hostreader

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/diagbeat"
	"github.com/acpidiag/acpidiag/region"
)

// A region nobody ticks: the ping is posted (mailbox words written in
// order), no answer comes, and the verdict explains why. The answering
// path needs the real AML: TestE2EDiagbeat (internal/testguest) pings a
// real guest, and acpi's mailbox tests run the AML in acpiexec.
func TestPingNoAnswer(t *testing.T) {
	for _, c := range []struct {
		name  string
		img   []byte
		state State
	}{
		{"absent", make([]byte, 8192), StateAbsent},
		{"stale", func() []byte { b := newImage(8192); putWord(b, region.Period.Offset, 1); return b }(), StateStale},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := writeRegionFile(t, t.TempDir(), "r", c.img)
			r, err := OpenRegion(p, OpenOptions{Writable: true})
			require.NoError(t, err)
			defer r.Close()
			start := time.Now()
			res, err := Ping(context.Background(), r, VerdictConfig{K: 1}, 400*time.Millisecond)
			require.ErrorIs(t, err, ErrNoAnswer)
			assert.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond)
			assert.False(t, res.Answered)
			assert.Equal(t, c.state, res.Verdict.State, res.Verdict.Reason)
			s, err := r.Snapshot()
			require.NoError(t, err)
			assert.Equal(t, []uint32{region.CmdPing, res.Arg, res.Seq, 1}, []uint32{s.MbxCmd, s.MbxArg, s.MbxSeq, res.Seq})
		})
	}
}

// A guest that acknowledges the ping with the wrong value. A real guest's
// AML cannot be made to answer wrongly, so the answer is written by hand
// (a hostile guest could write anything): the mailbox words are set as if
// the AML had answered seq 1 with another value.
func TestPingWrongAnswer(t *testing.T) {
	img := newImage(8192)
	putWord(img, region.MbxAck.Offset, 1)
	putWord(img, region.MbxResult.Offset, region.ResultOK)
	putWord(img, region.MbxValue.Offset, 0xbad)
	r, err := RegionFromBytes(img)
	require.NoError(t, err)
	res, err := Ping(context.Background(), r, VerdictConfig{}, time.Second)
	require.ErrorIs(t, err, ErrBadAnswer)
	assert.True(t, res.Answered)
	assert.Equal(t, uint32(0xbad), res.Value)
}

func TestPingReadOnly(t *testing.T) {
	p := writeRegionFile(t, t.TempDir(), "r", newImage(8192))
	r, err := OpenRegion(p, OpenOptions{})
	require.NoError(t, err)
	defer r.Close()
	_, err = Ping(context.Background(), r, VerdictConfig{}, time.Second)
	require.True(t, errors.Is(err, ErrReadOnly), "%v", err)
}

// Check keeps reading until every slot that promises a period is judged:
// the application beating its slot is alive, the one that stopped is stale,
// while the kernel's tick (echo of a fresh host stamp) is alive throughout.
func TestCheckJudgesSlots(t *testing.T) {
	now := time.Now()
	img := newImage(8192)
	setEcho(img, now)
	setHostStamp(img, now)
	r, err := RegionFromBytes(img)
	require.NoError(t, err)
	guest, err := diagbeat.FromBytes(img, "test")
	require.NoError(t, err)
	live, _ := guest.Slot(0)
	hung, _ := guest.Slot(5)
	require.NoError(t, live.Claim("web", 50*time.Millisecond))
	require.NoError(t, hung.Claim("db", 50*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			live.Beat()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	v, err := Check(ctx, r, VerdictConfig{}, 60*time.Second)
	require.NoError(t, err)
	assert.Equal(t, StateAlive, v.State)
	assert.Equal(t, SlotAlive, v.Slots[0].State)
	assert.Equal(t, SlotStale, v.Slots[5].State)
	assert.Less(t, time.Since(now), 30*time.Second, "judged within K slot periods (150 ms), not the whole wait (60 s)")
	var text bytes.Buffer
	require.NoError(t, v.WriteText(&text))
	assert.Contains(t, text.String(), `slot 5:      stale tag "db"`)
}
