package hostreader

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/region"
)

// within runs f and fails the test if it does not return in time: before
// special files were refused, open(2) of a FIFO blocked forever.
func within(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("still blocked after %v", d)
	}
}

func mkfifo(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, syscall.Mkfifo(p, 0o666))
	return p
}

// A named pipe, a character device or a directory is refused at once, for
// reading and for writing (stamping), never waited on.
func TestOpenRegionRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := mkfifo(t, dir, "vm.diag")
	link := filepath.Join(dir, "link.diag")
	require.NoError(t, os.Symlink(fifo, link))
	for _, p := range []string{fifo, link, "/dev/zero", "/dev/null", dir} {
		for _, writable := range []bool{false, true} {
			var r *Region
			var err error
			within(t, 2*time.Second, func() { r, err = OpenRegion(p, OpenOptions{Writable: writable}) })
			require.Error(t, err, p)
			assert.Nil(t, r)
			assert.ErrorIs(t, err, ErrNotRegular, p)
			var re *RegionError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, "source", re.Field)
			assert.Contains(t, err.Error(), p)
		}
	}
	_, err := OpenRegion(fifo, OpenOptions{})
	assert.Contains(t, err.Error(), "named pipe")
	_, err = OpenRegion("/dev/zero", OpenOptions{})
	assert.Contains(t, err.Error(), "character device")
}

func TestReadERSTFileRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := mkfifo(t, dir, "erst")
	for _, p := range []string{fifo, "/dev/zero", "/dev/urandom", dir} {
		var err error
		within(t, 2*time.Second, func() { _, err = ReadERSTFile(p) })
		assert.ErrorIs(t, err, ErrNotRegular, p)
		assert.Contains(t, err.Error(), p)
		within(t, 2*time.Second, func() { _, err = ReadERSTBytes(p) })
		assert.ErrorIs(t, err, ErrNotRegular, p)
	}
}

func TestReadERSTBytesBounded(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	f, err := os.Create(big)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(MaxERSTFileSize+1)) // sparse: costs no disk
	require.NoError(t, f.Close())
	_, err = ReadERSTBytes(big)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "MaxERSTFileSize")

	small := filepath.Join(dir, "small")
	require.NoError(t, os.WriteFile(small, []byte("hello"), 0o644))
	b, err := ReadERSTBytes(small)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	assert.Equal(t, 5, cap(b))
}

// A region whose guest-written region_size is hostile opens; its verdict
// is corrupt naming the field, the same at startup as when the same bytes
// appear at runtime.
func TestHostileRegionSizeOpensCorrupt(t *testing.T) {
	for _, size := range []uint32{0xffffffff, 8192, 0, 5000} {
		img := newImage(4096)
		putWord(img, region.RegionSize.Offset, size)
		p := writeRegionFile(t, t.TempDir(), "bad", img)
		r, err := OpenRegion(p, OpenOptions{})
		require.NoError(t, err, "region_size %#x", size)
		s, err := r.Snapshot()
		require.NoError(t, err)
		v := Assess(s, VerdictConfig{}, nil)
		assert.Equal(t, StateCorrupt, v.State, "region_size %#x", size)
		assert.Equal(t, "region_size", v.Field)
		assert.Equal(t, uint32(region.RegionSize.Offset), v.FieldOffset)
		r.Close()

		rb, err := RegionFromBytes(img)
		require.NoError(t, err, "region_size %#x", size)
		s, err = rb.Snapshot()
		require.NoError(t, err)
		assert.Equal(t, "region_size", Assess(s, VerdictConfig{}, nil).Field)
	}
}

// One hostile region among several: the watcher watches all of them; the
// bad one is corrupt with the field, the others are judged normally; the
// same bytes written into a good region at runtime give the same verdict.
func TestWatchHostileRegionAmongOthers(t *testing.T) {
	dir := t.TempDir()
	ok := writeRegionFile(t, dir, "ok", newImage(4096))
	badImg := newImage(4096)
	putWord(badImg, region.RegionSize.Offset, 0xffffffff)
	bad := writeRegionFile(t, dir, "bad", badImg)
	other := writeRegionFile(t, dir, "other", newImage(4096))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := NewWatcher(ctx, WatchOptions{Interval: 20 * time.Millisecond, Stamp: true})
	defer w.Close()
	for _, p := range []string{ok, bad, other} {
		require.NoError(t, w.Add(filepath.Base(p), p))
	}
	first := map[string]Verdict{}
	deadline := time.After(5 * time.Second)
	for len(first) < 3 {
		select {
		case c := <-w.Changes():
			if _, seen := first[c.Name]; !seen {
				first[c.Name] = c.Verdict
			}
		case <-deadline:
			t.Fatalf("verdicts of only %d regions", len(first))
		}
	}
	startup := first["bad"]
	assert.Equal(t, StateCorrupt, startup.State)
	assert.Equal(t, "region_size", startup.Field)
	assert.NotEqual(t, StateCorrupt, first["ok"].State)
	assert.NotEqual(t, StateCorrupt, first["other"].State)

	putWordFile(t, other, region.RegionSize.Offset, 0xffffffff)
	c, _ := waitChange(t, w.Changes(), "other", StateCorrupt, 5*time.Second)
	assert.Equal(t, startup.Field, c.Verdict.Field)
	assert.Equal(t, startup.FieldOffset, c.Verdict.FieldOffset)
	assert.Equal(t, startup.Reason, c.Verdict.Reason)
}
