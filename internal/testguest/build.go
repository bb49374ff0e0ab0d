package testguest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// modulePath is this repository's Go module path; the init is built from it.
const modulePath = "github.com/acpidiag/acpidiag"

// initPkg is the package of the guest's /init.
const initPkg = modulePath + "/internal/testguest/init"

// diagbeatPkg is the guest-side heartbeat command, installed as
// /bin/diagbeat (the init runs it with acpidiag.diagbeat=1).
const diagbeatPkg = modulePath + "/cmd/diagbeat"

// formatVersion changes whenever the archive layout below changes, so a
// cached archive of an older layout is never reused.
const formatVersion = "testguest-initramfs-2"

// Initramfs is a built guest initramfs.
type Initramfs struct {
	// Path is the newc cpio archive (QEMU -initrd).
	Path string
	// Hash is the hex SHA-256 of everything the archive was built from
	// (init sources, go.sum, Go version, modules); it names the file.
	Hash string
	// Kernel is the kernel whose modules the archive holds.
	Kernel KernelFiles
	// Reused is true when Build found the archive already built.
	Reused bool
}

// Build returns an initramfs for the cached guest kernel (Kernel): a newc
// cpio with the static Go /init, the static /bin/diagbeat, the pvpanic modules under /modules, the
// oops module (if any) as /modules/extra/oops.ko, the directories /proc, /sys, /dev, /tmp and the node /dev/console.
//
// The archive is named by a hash of its inputs and written into dir (""
// means CacheDir()/initramfs); when it is already there it is reused and
// nothing is compiled. Building needs the `go` tool and this repository's
// source: the module root is found from $ACPIDIAG_SRC, the location this
// package was compiled from, or the working directory and its parents.
func Build(ctx context.Context, dir string) (Initramfs, error) {
	k, err := Kernel()
	if err != nil {
		return Initramfs{}, err
	}
	return BuildFor(ctx, dir, k)
}

// BuildFor is Build for a given kernel (its Modules go into the archive).
func BuildFor(ctx context.Context, dir string, k KernelFiles) (Initramfs, error) {
	if dir == "" {
		c, err := CacheDir()
		if err != nil {
			return Initramfs{}, err
		}
		dir = filepath.Join(c, "initramfs")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Initramfs{}, fmt.Errorf("testguest: initramfs directory: %w", err)
	}
	root, err := SourceRoot()
	if err != nil {
		return Initramfs{}, err
	}
	goTool, err := goBinary()
	if err != nil {
		return Initramfs{}, err
	}
	hash, err := inputHash(ctx, goTool, root, k)
	if err != nil {
		return Initramfs{}, err
	}
	out := Initramfs{Path: filepath.Join(dir, "initramfs-"+hash[:20]+".cpio"), Hash: hash, Kernel: k}
	if st, err := os.Stat(out.Path); err == nil && st.Mode().IsRegular() && st.Size() > 0 {
		out.Reused = true
		return out, nil
	}

	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return Initramfs{}, fmt.Errorf("testguest: %w", err)
	}
	defer os.RemoveAll(tmp)
	initBin, beatBin := filepath.Join(tmp, "init"), filepath.Join(tmp, "diagbeat")
	for _, b := range []struct{ out, pkg string }{{initBin, initPkg}, {beatBin, diagbeatPkg}} {
		cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", b.out, b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			return Initramfs{}, fmt.Errorf("testguest: go build %s in %s: %w\n%s", b.pkg, root, err, out)
		}
	}
	cpioTmp := filepath.Join(tmp, "initramfs.cpio")
	if err := writeArchive(cpioTmp, initBin, beatBin, k.Modules, k.OopsModule); err != nil {
		return Initramfs{}, err
	}
	// Rename is atomic: concurrent builders of the same hash write the same
	// bytes, and a reader never sees a partial archive.
	if err := os.Rename(cpioTmp, out.Path); err != nil {
		return Initramfs{}, fmt.Errorf("testguest: %w", err)
	}
	return out, nil
}

// writeArchive writes the newc cpio archive to path.
func writeArchive(path, initBin, beatBin string, modules []string, oopsModule string) error {
	initBytes, err := os.ReadFile(initBin)
	if err != nil {
		return fmt.Errorf("testguest: reading built init: %w", err)
	}
	beatBytes, err := os.ReadFile(beatBin)
	if err != nil {
		return fmt.Errorf("testguest: reading built diagbeat: %w", err)
	}
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o555),
		cpio.Directory("sys", 0o555),
		cpio.Directory("tmp", 0o1777),
		cpio.Directory("modules", 0o755),
		cpio.StaticRecord(initBytes, cpio.Info{Name: "init", Mode: cpio.S_IFREG | 0o755}),
		cpio.Directory("bin", 0o755),
		cpio.StaticRecord(beatBytes, cpio.Info{Name: "bin/diagbeat", Mode: cpio.S_IFREG | 0o755}),
	}
	seen := map[string]string{}
	for _, m := range modules {
		b, err := os.ReadFile(m)
		if err != nil {
			return fmt.Errorf("testguest: reading module: %w", err)
		}
		base := filepath.Base(m)
		if prev, dup := seen[base]; dup {
			return fmt.Errorf("testguest: modules %s and %s have the same name", prev, m)
		}
		seen[base] = m
		recs = append(recs, cpio.StaticRecord(b, cpio.Info{Name: "modules/" + base, Mode: cpio.S_IFREG | 0o644}))
	}
	if oopsModule != "" {
		b, err := os.ReadFile(oopsModule)
		if err != nil {
			return fmt.Errorf("testguest: reading oops module: %w", err)
		}
		recs = append(recs, cpio.Directory("modules/extra", 0o755),
			cpio.StaticRecord(b, cpio.Info{Name: "modules/extra/oops.ko", Mode: cpio.S_IFREG | 0o644}))
	}
	for i := range recs {
		recs[i] = cpio.MakeReproducible(recs[i])
		recs[i].Ino = uint64(i + 1)
		recs[i].NLink = 1
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("testguest: %w", err)
	}
	bw := bufio.NewWriter(f)
	w := cpio.Newc.Writer(bw)
	if err := cpio.WriteRecords(w, recs); err != nil {
		f.Close()
		return fmt.Errorf("testguest: writing cpio: %w", err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		f.Close()
		return fmt.Errorf("testguest: writing cpio trailer: %w", err)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("testguest: writing cpio: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("testguest: writing cpio: %w", err)
	}
	return nil
}

// inputHash hashes everything the archive depends on: the Go files of every
// package of this module the init imports, go.mod and go.sum (they pin the
// other modules), the Go version, the archive format and the modules.
func inputHash(ctx context.Context, goTool, root string, k KernelFiles) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", formatVersion)

	ver := exec.CommandContext(ctx, goTool, "env", "GOVERSION")
	ver.Dir = root
	v, err := ver.Output()
	if err != nil {
		return "", fmt.Errorf("testguest: go env GOVERSION: %w", err)
	}
	fmt.Fprintf(h, "go %s\n", bytes.TrimSpace(v))

	list := exec.CommandContext(ctx, goTool, "list", "-deps",
		"-f", `{{with .Module}}{{if eq .Path "`+modulePath+`"}}{{$.Dir}}{{range $.GoFiles}} {{.}}{{end}}{{end}}{{end}}`, initPkg, diagbeatPkg)
	list.Dir = root
	list.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var stderr bytes.Buffer
	list.Stderr = &stderr
	lines, err := list.Output()
	if err != nil {
		return "", fmt.Errorf("testguest: go list %s in %s: %w\n%s", initPkg, root, err, stderr.Bytes())
	}
	var files []string
	for _, l := range strings.Split(string(lines), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		for _, name := range f[1:] {
			files = append(files, filepath.Join(f[0], name))
		}
	}
	if len(files) == 0 {
		return "", fmt.Errorf("testguest: go list %s found no source files in %s", initPkg, root)
	}
	files = append(files, filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum"))
	sort.Strings(files)
	for _, p := range files {
		if err := hashFile(h, p, strings.TrimPrefix(p, root)); err != nil {
			return "", err
		}
	}
	for _, m := range k.Modules {
		if err := hashFile(h, m, "module "+filepath.Base(m)); err != nil {
			return "", err
		}
	}
	if k.OopsModule != "" {
		if err := hashFile(h, k.OopsModule, "oops module"); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(h io.Writer, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("testguest: hashing inputs: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("testguest: hashing inputs: %w", err)
	}
	fmt.Fprintf(h, "%s %d\n", name, st.Size())
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("testguest: hashing %s: %w", path, err)
	}
	return nil
}

// SourceRoot returns the root of this repository's source tree (the
// directory whose go.mod declares module github.com/acpidiag/acpidiag):
// $ACPIDIAG_SRC when set, else the tree this package was compiled from,
// else the working directory or one of its parents.
func SourceRoot() (string, error) {
	if d := os.Getenv("ACPIDIAG_SRC"); d != "" {
		if !isModuleRoot(d) {
			return "", fmt.Errorf("testguest: ACPIDIAG_SRC=%s has no go.mod for module %s", d, modulePath)
		}
		return d, nil
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		d := filepath.Dir(filepath.Dir(filepath.Dir(file)))
		if isModuleRoot(d) {
			return d, nil
		}
	}
	wd, err := os.Getwd()
	if err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if isModuleRoot(d) {
				return d, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", errors.New("testguest: cannot find the acpidiag source tree to build the guest init: run from inside the repository or set ACPIDIAG_SRC")
}

func isModuleRoot(d string) bool {
	f, err := os.Open(filepath.Join(d, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 2 && fs[0] == "module" {
			return strings.Trim(fs[1], `"`) == modulePath
		}
	}
	return false
}

// goBinary finds the go tool: on PATH, else in GOROOT.
func goBinary() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if gr := os.Getenv("GOROOT"); gr != "" {
		p := filepath.Join(gr, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("testguest: the go tool is needed to build the guest init and was not found on PATH or in $GOROOT/bin")
}
