package hostreader

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
	_ = filepath.Join
}
