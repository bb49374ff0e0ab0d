package hostreader

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/region"
)

// regionFixtures returns the region images written by the real generated
// AML under acpiexec (fixtures/region/*.bin, see its README).
func regionFixtures(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(fixtures.Dir(), "region", "*.bin"))
	require.NoError(t, err)
	return files
}

func TestRealAMLRegionFixtures(t *testing.T) {
	files := regionFixtures(t)
	require.NotEmpty(t, files, "fixtures/region/*.bin")
	type want struct {
		seq, ticks, boots, period  uint32
		mbxSeq, ack, result, value uint32
		stampMs                    uint64
		stateAt1s                  State
		osiValid                   bool
	}
	wants := map[string]want{
		"acpiexec_q35_ivshmem_tick2.bin": {seq: 4, ticks: 2, boots: 1, period: 10,
			stateAt1s: StateUnknown, osiValid: true},
		"acpiexec_q35_ivshmem_mailbox_ping.bin": {seq: 6, ticks: 3, boots: 1, period: 10,
			mbxSeq: 1, ack: 1, result: region.ResultOK, value: 0xC0FFEE, stampMs: 0x19A_5E0A1B2C,
			stateAt1s: StateAlive, osiValid: true},
		"acpiexec_pc_fixed_tick3_setperiod.bin": {seq: 6, ticks: 3, boots: 1, period: 50,
			mbxSeq: 3, ack: 3, result: region.ResultAccepted, value: 50,
			stateAt1s: StateUnknown, osiValid: true},
	}
	seen := 0
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			r, err := OpenRegion(f, OpenOptions{})
			require.NoError(t, err)
			defer r.Close()
			w, known := wants[name]
			at := time.Now()
			if w.stampMs != 0 {
				at = time.UnixMilli(int64(w.stampMs)).Add(time.Second)
			}
			s, err := r.SnapshotAt(at)
			require.NoError(t, err)
			require.False(t, s.Torn)
			v := Assess(s, VerdictConfig{}, nil)
			// Every real image has a valid v1 header.
			assert.NotEqual(t, StateCorrupt, v.State, v.String())
			assert.NotEqual(t, StateAbsent, v.State)
			assert.Equal(t, uint32(4096), s.RegionSize)
			if !known {
				t.Logf("no expectations for %s: %s", name, v)
				return
			}
			seen++
			assert.Equal(t, w.seq, s.Seq, "seq")
			assert.Equal(t, w.ticks, s.Ticks, "ticks")
			assert.Equal(t, w.boots, s.Boots, "boots")
			assert.Equal(t, w.period, s.Period, "period")
			assert.Equal(t, w.mbxSeq, s.MbxSeq, "mbx_seq")
			assert.Equal(t, w.ack, s.MbxAck, "mbx_ack")
			assert.Equal(t, w.result, s.MbxResult, "mbx_result")
			assert.Equal(t, w.value, s.MbxValue, "mbx_value")
			assert.Equal(t, w.stateAt1s, v.State, v.Reason)
			assert.Equal(t, w.osiValid, s.OSI&region.OSIValid != 0)
			if w.stampMs != 0 {
				assert.Equal(t, int64(w.stampMs), v.LastTick.UnixMilli(), "echo of the host stamp")
				assert.Equal(t, int64(w.stampMs), v.HostStamp.UnixMilli())
				assert.Equal(t, time.Second, v.Age)
			}
			if w.ack != 0 {
				ack, res, val, ok := r.Answer()
				assert.True(t, ok)
				assert.Equal(t, []uint32{w.ack, w.result, w.value}, []uint32{ack, res, val})
			}
		})
	}
	assert.Equal(t, len(wants), seen, "every known fixture present")
}
