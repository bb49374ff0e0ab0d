package testguest

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
)

// writeCache lays out a kernel cache like scripts/fetch-kernel.sh does.
func writeCache(t *testing.T, manifest string, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		p := filepath.Join(dir, f)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("content of "+f), 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "manifest"), []byte(manifest), 0o644))
	return dir
}

const goodManifest = `# written by scripts/fetch-kernel.sh
version=6.1.0-56-amd64
package=linux-image-6.1.0-56-amd64
vmlinuz=vmlinuz-6.1.0-56-amd64
module=modules/pvpanic.ko
module=modules/pvpanic-mmio.ko
oops_module=extra/oops.ko
`

func TestKernelIn(t *testing.T) {
	dir := writeCache(t, goodManifest, "vmlinuz-6.1.0-56-amd64", "modules/pvpanic.ko", "modules/pvpanic-mmio.ko", "extra/oops.ko")
	k, err := KernelIn(dir)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "extra/oops.ko"), k.OopsModule)
	assert.Equal(t, "6.1.0-56-amd64", k.Version)
	assert.Equal(t, filepath.Join(dir, "vmlinuz-6.1.0-56-amd64"), k.Vmlinuz)
	assert.Equal(t, []string{filepath.Join(dir, "modules/pvpanic.ko"), filepath.Join(dir, "modules/pvpanic-mmio.ko")}, k.Modules)
}

func TestKernelInErrors(t *testing.T) {
	t.Run("no cache", func(t *testing.T) {
		_, err := KernelIn(filepath.Join(t.TempDir(), "kernel"))
		require.ErrorIs(t, err, ErrNoKernel)
		assert.Contains(t, err.Error(), "make guest")
		assert.Contains(t, err.Error(), "manifest is missing")
	})
	t.Run("file named in manifest missing", func(t *testing.T) {
		dir := writeCache(t, goodManifest, "vmlinuz-6.1.0-56-amd64", "modules/pvpanic.ko", "extra/oops.ko")
		_, err := KernelIn(dir)
		require.ErrorIs(t, err, ErrNoKernel)
		assert.Contains(t, err.Error(), "line 6")
	})
	for _, tc := range []struct {
		name, manifest string
		line           int
		msg            string
	}{
		{"not key=value", "version=1\ngarbage\n", 2, `want key=value, got "garbage"`},
		{"unknown key", "version=1\nvmlinuz=v\nkernel=x\n", 3, `unknown key "kernel"`},
		{"absolute path", "vmlinuz=/boot/vmlinuz\n", 1, "must be relative"},
		{"escaping path", "vmlinuz=../../etc/passwd\n", 1, "must be relative"},
		{"escaping oops module", "version=1\noops_module=../x.ko\n", 2, "must be relative"},
		{"no vmlinuz", "version=1\nmodule=m.ko\n", 0, "no vmlinuz= line"},
		{"no modules", "version=1\nvmlinuz=v\n", 0, "no module= line"},
		{"no version", "vmlinuz=v\nmodule=m.ko\n", 0, "no version= line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeCache(t, tc.manifest, "v", "m.ko")
			_, err := KernelIn(dir)
			var me *ManifestError
			require.ErrorAs(t, err, &me)
			assert.Equal(t, tc.line, me.Line)
			assert.Contains(t, me.Msg, tc.msg)
			assert.Contains(t, err.Error(), filepath.Join(dir, "manifest"))
			assert.False(t, errors.Is(err, ErrNoKernel))
		})
	}
}

func TestKernelUsesCacheDir(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("ACPIDIAG_CACHE", cache)
	d, err := CacheDir()
	require.NoError(t, err)
	assert.Equal(t, cache, d)
	_, err = Kernel()
	require.ErrorIs(t, err, ErrNoKernel)
	assert.Contains(t, err.Error(), filepath.Join(cache, "kernel", "manifest"))
}

func TestBootArgs(t *testing.T) {
	assert.Equal(t, "console=ttyS0 panic=-1 loglevel=4 acpidiag.mode=panic acpidiag.after=2.5s",
		BootArgs(ModePanic, 2500*time.Millisecond))
	assert.Equal(t, "console=ttyS0 panic=-1 loglevel=4 acpidiag.after=0s acpidiag.debug=1 thermal.tzp=1",
		BootArgs("", 0, "acpidiag.debug=1", "thermal.tzp=1"))
	assert.Equal(t, "console=ttyS0 panic=-1 loglevel=4 acpidiag.mode=alive",
		BootArgs(ModeAlive, -1))
	assert.NotContains(t, BootArgs(ModeAlive, 0), "thermal.tzp")
}

// readArchive returns the records of a newc archive by name, with contents.
func readArchive(t *testing.T, path string) map[string]cpio.Record {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	rr, err := cpio.Newc.NewFileReader(f)
	require.NoError(t, err)
	recs, err := cpio.ReadAllRecords(rr)
	require.NoError(t, err)
	m := map[string]cpio.Record{}
	for _, r := range recs {
		_, dup := m[r.Name]
		require.False(t, dup, "duplicate record %s", r.Name)
		m[r.Name] = r
	}
	return m
}

func recordBytes(t *testing.T, r cpio.Record) []byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	require.NoError(t, err)
	return b
}

// TestBuildArchive builds the real init with the go tool and checks the
// archive the kernel will unpack. The modules are stand-in files: the
// archive carries them byte for byte whatever they hold.
func TestBuildArchive(t *testing.T) {
	mods := t.TempDir()
	k := KernelFiles{Version: "test", Vmlinuz: "unused", Modules: []string{
		filepath.Join(mods, "pvpanic.ko"), filepath.Join(mods, "pvpanic-mmio.ko"),
	}}
	for _, m := range k.Modules {
		require.NoError(t, os.WriteFile(m, []byte("module bytes of "+filepath.Base(m)), 0o644))
	}
	k.OopsModule = filepath.Join(mods, "acpidiag_oops.ko")
	require.NoError(t, os.WriteFile(k.OopsModule, []byte("oops module bytes"), 0o644))
	out := t.TempDir()
	ctx := context.Background()
	ird, err := BuildFor(ctx, out, k)
	require.NoError(t, err)
	require.False(t, ird.Reused)
	require.Equal(t, out, filepath.Dir(ird.Path))
	require.Len(t, ird.Hash, 64)

	recs := readArchive(t, ird.Path)
	for _, d := range []string{"dev", "proc", "sys", "tmp", "modules"} {
		require.Contains(t, recs, d)
		assert.Equal(t, uint64(cpio.S_IFDIR), recs[d].Mode&cpio.S_IFMT, d)
	}
	con := recs["dev/console"]
	assert.Equal(t, uint64(cpio.S_IFCHR), con.Mode&cpio.S_IFMT)
	assert.Equal(t, [2]uint64{5, 1}, [2]uint64{con.Rmajor, con.Rminor})
	for _, m := range k.Modules {
		r, ok := recs["modules/"+filepath.Base(m)]
		require.True(t, ok, "module %s missing", m)
		want, err := os.ReadFile(m)
		require.NoError(t, err)
		assert.Equal(t, want, recordBytes(t, r))
	}
	require.Contains(t, recs, "modules/extra")
	assert.Equal(t, []byte("oops module bytes"), recordBytes(t, recs["modules/extra/oops.ko"]))
	in, ok := recs["init"]
	require.True(t, ok)
	assert.Equal(t, uint64(cpio.S_IFREG|0o755), in.Mode)
	e, err := elf.NewFile(bytes.NewReader(recordBytes(t, in)))
	require.NoError(t, err)
	assert.Equal(t, elf.EM_X86_64, e.Machine)
	for _, p := range e.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "init must be static (no ELF interpreter)")
	}

	// Same inputs: reused, nothing rebuilt.
	again, err := BuildFor(ctx, out, k)
	require.NoError(t, err)
	assert.True(t, again.Reused)
	assert.Equal(t, ird.Path, again.Path)

	// Different module bytes: a different archive.
	require.NoError(t, os.WriteFile(k.Modules[1], []byte("changed"), 0o644))
	changed, err := BuildFor(ctx, out, k)
	require.NoError(t, err)
	assert.False(t, changed.Reused)
	assert.NotEqual(t, ird.Path, changed.Path)
	assert.Equal(t, []byte("changed"), recordBytes(t, readArchive(t, changed.Path)["modules/pvpanic-mmio.ko"]))

	// No oops module: none in the archive, and a different hash.
	k.OopsModule = ""
	noOops, err := BuildFor(ctx, out, k)
	require.NoError(t, err)
	assert.NotEqual(t, changed.Path, noOops.Path)
	recs = readArchive(t, noOops.Path)
	assert.NotContains(t, recs, "modules/extra/oops.ko")
	assert.NotContains(t, recs, "modules/extra")
}

func TestBuildErrors(t *testing.T) {
	_, err := BuildFor(context.Background(), t.TempDir(), KernelFiles{Modules: []string{filepath.Join(t.TempDir(), "absent.ko")}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "absent.ko")

	t.Setenv("ACPIDIAG_SRC", t.TempDir())
	_, err = SourceRoot()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ACPIDIAG_SRC")
}

func TestBuildWithoutKernel(t *testing.T) {
	t.Setenv("ACPIDIAG_CACHE", t.TempDir())
	_, err := Build(context.Background(), t.TempDir())
	require.ErrorIs(t, err, ErrNoKernel)
}

// BenchmarkBuildReuse measures Build when the archive is already there (the
// case of every test run after the first): two `go` invocations for the
// input hash, no compile.
func BenchmarkBuildReuse(b *testing.B) {
	mods := b.TempDir()
	k := KernelFiles{Modules: []string{filepath.Join(mods, "pvpanic.ko")}}
	require.NoError(b, os.WriteFile(k.Modules[0], []byte("module"), 0o644))
	out := b.TempDir()
	_, err := BuildFor(context.Background(), out, k)
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		r, err := BuildFor(context.Background(), out, k)
		if err != nil || !r.Reused {
			b.Fatalf("reuse failed: %v %+v", err, r)
		}
	}
}

// FuzzKernelIn: any manifest bytes give a KernelFiles or an error, never a
// panic, and never a path outside the cache directory.
func FuzzKernelIn(f *testing.F) {
	f.Add([]byte(goodManifest))
	f.Add([]byte("version=1\nvmlinuz=v\nmodule=m.ko\n"))
	f.Add([]byte("vmlinuz=../v\n"))
	f.Add([]byte("\x00=\n=\n#\n"))
	if c, err := CacheDir(); err == nil {
		if b, err := os.ReadFile(filepath.Join(c, "kernel", "manifest")); err == nil {
			f.Add(b) // the real manifest written by scripts/fetch-kernel.sh
		}
	}
	dir := f.TempDir()
	for _, name := range []string{"v", "m.ko", "vmlinuz-6.1.0-56-amd64", "extra/oops.ko", "modules/pvpanic.ko", "modules/pvpanic-mmio.ko"} {
		p := filepath.Join(dir, name)
		require.NoError(f, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(f, os.WriteFile(p, []byte("x"), 0o644))
	}
	f.Fuzz(func(t *testing.T, manifest []byte) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "manifest"), manifest, 0o644))
		k, err := KernelIn(dir)
		if err != nil {
			return
		}
		for _, p := range append([]string{k.Vmlinuz, k.OopsModule}, k.Modules...) {
			if p == "" {
				continue
			}
			rel, err := filepath.Rel(dir, p)
			require.NoError(t, err)
			require.False(t, rel == ".." || len(rel) > 2 && rel[:3] == "../", "path %q escapes the cache", p)
		}
	})
}
