package diagbeat

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/region"
)

// fakeSysfs lays out /sys/bus/pci/devices the way Linux does for the given
// devices (name -> vendor, device) and gives each a 64 KiB resource2 file
// holding an initialised region header. Sysfs is files: the discovery code
// runs unchanged; only the BAR is a regular file instead of device memory.
func fakeSysfs(t *testing.T, devs map[string][2]string) string {
	t.Helper()
	root := t.TempDir()
	for name, ids := range devs {
		d := filepath.Join(root, "bus", "pci", "devices", name)
		require.NoError(t, os.MkdirAll(d, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(d, "vendor"), []byte(ids[0]+"\n"), 0o444))
		require.NoError(t, os.WriteFile(filepath.Join(d, "device"), []byte(ids[1]+"\n"), 0o444))
		img := make([]byte, 64<<10)
		for _, w := range []struct {
			f region.Field
			v uint32
		}{{region.MagicWord, region.Magic}, {region.VersionWord, region.Version}, {region.HeaderSizeWord, region.HeaderSize}, {region.RegionSize, 64 << 10}, {region.Period, 10}} {
			binary.LittleEndian.PutUint32(img[w.f.Offset:], w.v)
		}
		require.NoError(t, os.WriteFile(filepath.Join(d, "resource2"), img, 0o644))
	}
	return root
}

func TestOpenIvshmemFindsTheDevice(t *testing.T) {
	root := fakeSysfs(t, map[string][2]string{
		"0000:00:01.0": {"0x8086", "0x7000"},
		"0000:00:03.0": {"0x1af4", "0x1000"}, // virtio-net: same vendor, other device
		"0000:00:10.0": {IvshmemVendor, IvshmemDevice},
		"0000:00:11.0": {IvshmemVendor, IvshmemDevice},
	})
	r, err := OpenIvshmem(root, 0)
	require.NoError(t, err)
	assert.Equal(t, "ivshmem 0000:00:10.0", r.Source)
	require.NoError(t, r.Ready())
	require.NoError(t, r.Close())

	r, err = OpenIvshmem(root, 0x11)
	require.NoError(t, err)
	assert.Equal(t, "ivshmem 0000:00:11.0", r.Source)
	require.NoError(t, r.Close())

	_, err = OpenIvshmem(root, 0x12)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = OpenIvshmem(fakeSysfs(t, map[string][2]string{"0000:00:03.0": {"0x1af4", "0x1000"}}), 0)
	require.ErrorIs(t, err, ErrNotFound)
}

// What the guest writes through the mapping is what the host's decoder
// reads from the backing file: tag, promised period, beats; and the slot
// verdict follows the beats.
func TestSlotSeenByHostReader(t *testing.T) {
	root := fakeSysfs(t, map[string][2]string{"0000:00:10.0": {IvshmemVendor, IvshmemDevice}})
	r, err := OpenIvshmem(root, 0x10)
	require.NoError(t, err)
	defer r.Close()
	s, err := r.Slot(2)
	require.NoError(t, err)
	require.NoError(t, s.Claim("web", 50*time.Millisecond))
	host, err := hostreader.OpenRegion(filepath.Join(root, "bus", "pci", "devices", "0000:00:10.0", "resource2"), hostreader.OpenOptions{})
	require.NoError(t, err)
	defer host.Close()
	tr := hostreader.NewTracker(hostreader.VerdictConfig{K: 2})
	snap := func() hostreader.Verdict {
		sn, err := host.Snapshot()
		require.NoError(t, err)
		return tr.Update(sn)
	}
	v := snap()
	assert.Equal(t, "web", hostreader.EscapeTag(v.Snapshot.Slots[2].Tag[:]))
	assert.Equal(t, uint32(50), v.Snapshot.Slots[2].PeriodMs)
	for i := 0; i < 3; i++ {
		s.Beat()
		time.Sleep(20 * time.Millisecond)
		v = snap()
	}
	assert.Equal(t, hostreader.SlotAlive, v.Slots[2].State)
	assert.Equal(t, uint32(3), v.Snapshot.Slots[2].Beat)
	time.Sleep(150 * time.Millisecond) // > K periods without a beat
	v = snap()
	assert.Equal(t, hostreader.SlotStale, v.Slots[2].State)
	s.Release()
	v = snap()
	assert.Equal(t, hostreader.SlotUnused, v.Slots[2].State)
}

func TestRunBeatsOnlyWhenTheCheckPasses(t *testing.T) {
	img := make([]byte, region.HeaderSize)
	r, err := FromBytes(img, "test")
	require.NoError(t, err)
	s, err := r.Slot(1)
	require.NoError(t, err)
	healthy := true
	var reports []error
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- Run(ctx, s, RunOptions{Tag: "chk", Every: 20 * time.Millisecond, KeepOnExit: true,
			Check: func(context.Context) error {
				if healthy {
					return nil
				}
				return errors.New("down")
			},
			Report: func(_ uint32, err error) { reports = append(reports, err) }})
	}()
	require.Eventually(t, func() bool { return s.Beats() >= 3 }, 2*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	n := s.Beats()
	healthy = false
	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		done <- Run(ctx, s, RunOptions{Tag: "chk", Every: 20 * time.Millisecond,
			Check: func(context.Context) error {
				if healthy {
					return nil
				}
				return errors.New("down")
			},
			Report: func(_ uint32, err error) { reports = append(reports, err) }})
	}()
	time.Sleep(150 * time.Millisecond)
	assert.Zero(t, s.Beats(), "Claim resets the beat and a failing check never beats (had %d)", n)
	cancel()
	require.NoError(t, <-done)
	assert.Equal(t, make([]byte, region.SlotSize), img[region.OffSlots+region.SlotSize:region.OffSlots+2*region.SlotSize], "released on exit")
	require.Len(t, reports, 2)
	assert.NoError(t, reports[0])
	assert.Error(t, reports[1])
}

func TestCommandCheck(t *testing.T) {
	ctx := context.Background()
	assert.NoError(t, CommandCheck([]string{"true"}, nil)(ctx))
	assert.Error(t, CommandCheck([]string{"false"}, nil)(ctx))
	assert.Error(t, CommandCheck([]string{"/nonexistent/check"}, nil)(ctx))
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	assert.Error(t, CommandCheck([]string{"sleep", "60"}, nil)(tctx), "a check slower than its period fails")
	assert.Less(t, time.Since(start), 30*time.Second, "cut at the context's 50 ms, not after the command's 60 s")
}

func TestValidation(t *testing.T) {
	for _, bad := range []string{"", "toolongtag", "a b", "caf\xc3\xa9", "x\x1b"} {
		assert.Error(t, ValidTag(bad), "%q", bad)
	}
	assert.NoError(t, ValidTag("web-1"))
	r, err := FromBytes(make([]byte, region.HeaderSize), "t")
	require.NoError(t, err)
	_, err = r.Slot(region.NumSlots)
	assert.Error(t, err)
	require.ErrorIs(t, r.Ready(), ErrNoRegion)
	s, _ := r.Slot(0)
	assert.Error(t, s.Claim("web", 0))
	_, err = FromBytes(make([]byte, 16), "t")
	assert.Error(t, err)
	_, err = OpenFixed(filepath.Join(t.TempDir(), "mem"), 0xC0000000, 64<<10)
	assert.ErrorContains(t, err, "above 2 GiB")
}
