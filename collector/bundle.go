// Package collector is the reference collector for incident bundles
// (docs/collector.md): it receives the .tar.gz bundles the monitor's http
// sink POSTs, verifies them (manifest schema 1, SHA-256 of every
// artifact, size limits, no path traversal, links or special files in the
// archive, bounded decompression), stores each once (deduplicated by the
// bundle id, atomically), runs the analyzers and indexes the result by
// VM, time and diagnosis, and serves a JSON API and HTML pages.
package collector

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/acpidiag/acpidiag/monitor"
)

// Limits bound what one bundle may hold. Zero values select the defaults.
type Limits struct {
	// Compressed bounds the request body (default 128 MiB).
	Compressed int64
	// Unpacked bounds the sum of the files' sizes after decompression
	// (default 512 MiB): a gzip bomb stops there.
	Unpacked int64
	// Files bounds the number of archive entries (default 1024).
	Files int
	// Manifest bounds manifest.json (default 8 MiB).
	Manifest int64
}

// Defaults of Limits.
const (
	DefaultCompressed = 128 << 20
	DefaultUnpacked   = 512 << 20
	DefaultFiles      = 1024
	DefaultManifest   = 8 << 20
)

func (l Limits) withDefaults() Limits {
	if l.Compressed <= 0 {
		l.Compressed = DefaultCompressed
	}
	if l.Unpacked <= 0 {
		l.Unpacked = DefaultUnpacked
	}
	if l.Files <= 0 {
		l.Files = DefaultFiles
	}
	if l.Manifest <= 0 {
		l.Manifest = DefaultManifest
	}
	return l
}

// BundleError is a bundle refused by verification: Where names the
// archive entry, the manifest key path or the byte offset at fault.
type BundleError struct {
	Where string
	Msg   string
	// TooLarge is set when a size limit was hit (HTTP 413).
	TooLarge bool
}

func (e *BundleError) Error() string {
	if e.Where == "" {
		return "bundle: " + e.Msg
	}
	return "bundle: " + e.Where + ": " + e.Msg
}

func bundleErr(where, format string, a ...any) error {
	return &BundleError{Where: where, Msg: fmt.Sprintf(format, a...)}
}

// ValidID reports whether id can name a bundle: 1-200 characters of
// [A-Za-z0-9._-], not starting with a dot (the monitor's incident ids).
func ValidID(id string) bool {
	if id == "" || len(id) > 200 || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// validFile reports whether name is a safe relative file name inside a
// bundle: slash-separated components of ValidID form (so no "..", no
// absolute path, no backslash, no control character).
func validFile(name string) bool {
	if name == "" || len(name) > 255 {
		return false
	}
	for _, c := range strings.Split(name, "/") {
		if !ValidID(c) {
			return false
		}
	}
	return true
}

// ParseManifest decodes and checks a manifest.json: schema 1, a valid
// id, a VM name, and artifacts with safe, distinct names, sizes that are
// not negative and SHA-256 values of 64 hex digits. Unknown keys are
// allowed (keys are only ever added within a schema version).
func ParseManifest(b []byte) (*monitor.Manifest, error) {
	var probe struct {
		Schema *int `json:"schema"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, manifestJSONErr(b, err)
	}
	if probe.Schema == nil {
		return nil, bundleErr("manifest.json: schema", "missing")
	}
	if *probe.Schema != monitor.SchemaVersion {
		return nil, bundleErr("manifest.json: schema", "%d: this collector reads schema %d", *probe.Schema, monitor.SchemaVersion)
	}
	var m monitor.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, manifestJSONErr(b, err)
	}
	if !ValidID(m.ID) {
		return nil, bundleErr("manifest.json: id", "%q: want 1-200 characters of [A-Za-z0-9._-]", trunc(m.ID))
	}
	if m.VM.Name == "" {
		return nil, bundleErr("manifest.json: vm.name", "empty")
	}
	if m.Created.IsZero() {
		return nil, bundleErr("manifest.json: created", "missing")
	}
	seen := map[string]bool{}
	for i, a := range m.Artifacts {
		at := fmt.Sprintf("manifest.json: artifacts[%d]", i)
		if a.Name == "" {
			continue // a diagnostic that produced nothing
		}
		if !validFile(a.Name) || a.Name == "manifest.json" {
			return nil, bundleErr(at+".name", "%q: not a safe file name", trunc(a.Name))
		}
		if seen[a.Name] {
			return nil, bundleErr(at+".name", "%q: listed twice", a.Name)
		}
		seen[a.Name] = true
		if a.Size < 0 {
			return nil, bundleErr(at+".size", "%d: negative", a.Size)
		}
		if len(a.SHA256) != 64 {
			return nil, bundleErr(at+".sha256", "%q: want 64 hex digits", trunc(a.SHA256))
		}
		if _, err := hex.DecodeString(a.SHA256); err != nil {
			return nil, bundleErr(at+".sha256", "%q: want 64 hex digits", trunc(a.SHA256))
		}
	}
	return &m, nil
}

func manifestJSONErr(b []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return bundleErr(fmt.Sprintf("manifest.json: offset %d", se.Offset), "%v", err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return bundleErr("manifest.json: "+te.Field, "%v", err)
	}
	return bundleErr("manifest.json", "%v", err)
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Unpack reads a bundle archive (.tar.gz, entries ID/FILE) from r into
// the directory dst (which must exist and be empty), verifying it as it
// goes: only regular files with safe names under one top directory, at
// most lim.Files entries and lim.Unpacked bytes, a manifest that
// ParseManifest accepts whose id is the top directory, and every file
// listed in the manifest with its size and SHA-256 (and no file that is
// not listed). Files are fsynced. On error dst holds partial content: the
// caller removes it.
func Unpack(r io.Reader, dst string, lim Limits) (*monitor.Manifest, error) {
	lim = lim.withDefaults()
	cr := &countingReader{r: r}
	zr, err := gzip.NewReader(cr)
	if err != nil {
		return nil, bundleErr("offset 0", "not gzip: %v", err)
	}
	zr.Multistream(false)
	tr := tar.NewReader(zr)
	type got struct {
		size int64
		sum  string
	}
	files := map[string]got{}
	var fs syncer
	defer fs.close()
	var top string
	var manifest []byte
	var total int64
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, bundleErr(fmt.Sprintf("tar entry %d (compressed offset %d)", i, cr.n), "%v", err)
		}
		if i >= lim.Files {
			return nil, &BundleError{Where: fmt.Sprintf("tar entry %d", i), Msg: fmt.Sprintf("more than %d entries", lim.Files), TooLarge: true}
		}
		at := fmt.Sprintf("tar entry %d %q", i, trunc(h.Name))
		if h.Typeflag == tar.TypeDir && h.Size == 0 {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return nil, bundleErr(at, "type %q refused (only regular files: no links, devices or fifos)", string(h.Typeflag))
		}
		dir, name, ok := strings.Cut(h.Name, "/")
		if !ok || !ValidID(dir) || !validFile(name) {
			return nil, bundleErr(at, "name refused: want ID/FILE with a relative, clean file name")
		}
		if top == "" {
			top = dir
		} else if dir != top {
			return nil, bundleErr(at, "top directory %q differs from %q", trunc(dir), top)
		}
		if _, dup := files[name]; dup {
			return nil, bundleErr(at, "file given twice")
		}
		if h.Size < 0 || total+h.Size > lim.Unpacked {
			return nil, &BundleError{Where: at, Msg: fmt.Sprintf("unpacked size over the limit of %d bytes", lim.Unpacked), TooLarge: true}
		}
		if name == "manifest.json" {
			if h.Size > lim.Manifest {
				return nil, &BundleError{Where: at, Msg: fmt.Sprintf("%d bytes: manifest over the limit of %d bytes", h.Size, lim.Manifest), TooLarge: true}
			}
			b, err := io.ReadAll(io.LimitReader(tr, h.Size))
			if err != nil || int64(len(b)) != h.Size {
				return nil, bundleErr(at, "short read: %v", err)
			}
			manifest = b
			total += h.Size
			files[name] = got{size: h.Size}
			if err := fs.writeFile(filepath.Join(dst, name), bytes.NewReader(b), h.Size, nil); err != nil {
				return nil, err
			}
			continue
		}
		p := filepath.Join(dst, filepath.FromSlash(name))
		if strings.Contains(name, "/") {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return nil, err
			}
		}
		hs := sha256.New()
		if err := fs.writeFile(p, tr, h.Size, hs); err != nil {
			return nil, bundleErr(at, "%v", err)
		}
		total += h.Size
		files[name] = got{size: h.Size, sum: hex.EncodeToString(hs.Sum(nil))}
	}
	// Whatever follows the tar end inside the gzip member is ignored,
	// but read to the end (bounded) so a trailing gzip error is seen.
	if _, err := io.Copy(io.Discard, io.LimitReader(zr, 1<<20)); err != nil {
		return nil, bundleErr(fmt.Sprintf("compressed offset %d", cr.n), "%v", err)
	}
	if manifest == nil {
		return nil, bundleErr("manifest.json", "missing from the archive")
	}
	m, err := ParseManifest(manifest)
	if err != nil {
		return nil, err
	}
	if m.ID != top {
		return nil, bundleErr("manifest.json: id", "%q differs from the archive's directory %q", m.ID, top)
	}
	listed := map[string]bool{"manifest.json": true}
	for i, a := range m.Artifacts {
		if a.Name == "" {
			continue
		}
		listed[a.Name] = true
		g, ok := files[a.Name]
		at := fmt.Sprintf("manifest.json: artifacts[%d] %q", i, a.Name)
		switch {
		case !ok:
			return nil, bundleErr(at, "listed but not in the archive")
		case g.size != a.Size:
			return nil, bundleErr(at, "size %d in the archive, %d in the manifest", g.size, a.Size)
		case !strings.EqualFold(g.sum, a.SHA256):
			return nil, bundleErr(at, "SHA-256 %s in the archive, %s in the manifest", g.sum, a.SHA256)
		}
	}
	for name := range files {
		if !listed[name] {
			return nil, bundleErr(fmt.Sprintf("tar file %q", trunc(name)), "not listed in manifest.json")
		}
	}
	if err := fs.sync(); err != nil {
		return nil, err
	}
	return m, nil
}

// syncer keeps the files a bundle writes open and fsyncs them all at
// once at the end, concurrently: the file system commits them together
// instead of one journal commit per file.
type syncer struct {
	files []*os.File
}

// writeFile copies exactly size bytes from r to a new file p, hashing
// them into h (when not nil); the file is fsynced by sync.
func (s *syncer) writeFile(p string, r io.Reader, size int64, h io.Writer) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	s.files = append(s.files, f)
	w := io.Writer(f)
	if h != nil {
		w = io.MultiWriter(f, h)
	}
	n, err := io.Copy(w, io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("short file: %d of %d bytes", n, size)
	}
	return err
}

func (s *syncer) sync() error {
	errs := make([]error, len(s.files))
	var wg sync.WaitGroup
	for i, f := range s.files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.Sync()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *syncer) close() {
	for _, f := range s.files {
		f.Close()
	}
}
