package monitor

import (
	"archive/tar"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// SchemaVersion is the version of manifest.json (docs/bundle.md).
const SchemaVersion = 1

// Manifest is a bundle's manifest.json.
type Manifest struct {
	Schema  int       `json:"schema"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	// Finished is when the last artifact was written.
	Finished time.Time `json:"finished"`
	// Trigger is "scenario" (probe failures) or "manual" (diagmon diag).
	Trigger  string            `json:"trigger"`
	Host     string            `json:"host,omitempty"`
	VM       ManifestVM        `json:"vm"`
	Scenario *ManifestScenario `json:"scenario,omitempty"`
	// Failures is the number of consecutive failures that raised the incident.
	Failures int `json:"failures,omitempty"`
	// ProbeHistory is the scenario's recent probe results, oldest first.
	ProbeHistory []Result `json:"probe_history,omitempty"`
	// Timeline is the VM's verdict timeline (region, QMP, ERST, monitor).
	Timeline  []TimelineEntry `json:"timeline"`
	Artifacts []Artifact      `json:"artifacts"`
	Limits    ManifestLimits  `json:"limits"`
	// LogLevel is set when SysRq captures raised the guest's console
	// loglevel: the level set back and where it came from.
	LogLevel *ManifestLogLevel `json:"loglevel,omitempty"`
	// TotalBytes is the sum of the artifact sizes (the memory dump, which
	// has its own cap, excluded).
	TotalBytes int64 `json:"total_bytes"`
	// Truncated is set when any artifact was cut by a cap.
	Truncated bool `json:"truncated,omitempty"`
	// Azure and ManifestPassthrough carry the configuration's raw values
	// of the same keys, for later consumers (not interpreted here).
	ManifestPassthrough json.RawMessage `json:"ManifestPassthrough,omitempty"`
}

// ManifestVM is the VM an incident is about.
type ManifestVM struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	QMP    string            `json:"qmp,omitempty"`
	Serial string            `json:"serial,omitempty"`
	Region string            `json:"region,omitempty"`
	ERST   string            `json:"erst,omitempty"`
}

// ManifestScenario is the scenario that raised the incident.
type ManifestScenario struct {
	Name        string      `json:"name"`
	Probe       ProbeConfig `json:"probe"`
	Every       string      `json:"every"`
	Timeout     string      `json:"timeout"`
	Failures    int         `json:"failures"`
	Cooldown    string      `json:"cooldown,omitempty"`
	Diagnostics []string    `json:"diagnostics"`
}

// ManifestLimits are the caps in force.
type ManifestLimits struct {
	BundleBytes   int64 `json:"bundle_bytes"`
	ArtifactBytes int64 `json:"artifact_bytes"`
	MemoryBytes   int64 `json:"memory_bytes,omitempty"`
}

// Artifact is one file of a bundle (or one diagnostic that produced no file
// because it failed).
type Artifact struct {
	// Name is the file name inside the bundle ("" when the diagnostic
	// failed before producing anything).
	Name string `json:"name,omitempty"`
	// Diagnostic is the diagnostic that made it ("sysrq:t", "registers").
	Diagnostic string `json:"diagnostic"`
	// Size and SHA256 describe the file as written.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
	// Started and Duration: when the diagnostic started and how long it took.
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	// Error is why the diagnostic failed, timed out or was cut ("" if it
	// did not).
	Error string `json:"error,omitempty"`
	// TimedOut is set when the diagnostic overran its timeout.
	TimedOut bool `json:"timed_out,omitempty"`
	// Truncated is set when a cap cut the file; OriginalSize is the size
	// before the cut.
	Truncated    bool  `json:"truncated,omitempty"`
	OriginalSize int64 `json:"original_size,omitempty"`
	// Guest is set when the file holds raw guest text (escape it before
	// printing).
	Guest bool `json:"guest_text,omitempty"`
}

// bundleWriter assembles one bundle directory under the caps.
type bundleWriter struct {
	dir    string
	limits Limits
	mu     sync.Mutex
	man    Manifest
	used   int64
}

func newBundleWriter(dir string, man Manifest, l Limits) (*bundleWriter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("monitor: bundle: %w", err)
	}
	man.Schema = SchemaVersion
	man.Limits = ManifestLimits{BundleBytes: l.BundleBytes, ArtifactBytes: l.ArtifactBytes, MemoryBytes: l.MemoryBytes}
	man.Artifacts = []Artifact{}
	return &bundleWriter{dir: dir, limits: l, man: man}, nil
}

// add writes data as file name, cut to the artifact cap and to what is
// left of the bundle cap (the cut is recorded, never silent).
func (w *bundleWriter) add(a Artifact, data []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if a.Name == "" || (len(data) == 0 && a.Error != "") {
		a.Name = ""
		w.man.Artifacts = append(w.man.Artifacts, a)
		return
	}
	room := w.limits.ArtifactBytes
	why := "artifact cap"
	if left := w.limits.BundleBytes - w.used; left < room {
		room, why = left, "bundle cap"
	}
	if room < 0 {
		room = 0
	}
	if a.Truncated && int64(len(data)) <= room {
		// Cut by its producer at the artifact cap.
		note := fmt.Sprintf("cut from %d to %d bytes by the artifact cap", a.OriginalSize, len(data))
		a.Error = strings.TrimPrefix(a.Error+"; "+note, "; ")
		w.man.Truncated = true
	}
	if int64(len(data)) > room {
		if !a.Truncated {
			a.Truncated, a.OriginalSize = true, int64(len(data))
		}
		note := fmt.Sprintf("cut from %d to %d bytes by the %s", a.OriginalSize, room, why)
		if a.Error == "" {
			a.Error = note
		} else {
			a.Error += "; " + note
		}
		data = data[:room]
		w.man.Truncated = true
	}
	if err := os.WriteFile(filepath.Join(w.dir, a.Name), data, 0o644); err != nil {
		a.Error = strings.TrimPrefix(a.Error+"; writing: "+err.Error(), "; ")
		a.Name = ""
		w.man.Artifacts = append(w.man.Artifacts, a)
		return
	}
	sum := sha256.Sum256(data)
	a.Size, a.SHA256 = int64(len(data)), hex.EncodeToString(sum[:])
	w.used += a.Size
	w.man.TotalBytes = w.used
	w.man.Artifacts = append(w.man.Artifacts, a)
}

// addFile records a file already written into the bundle directory (the
// memory dump), hashing it.
func (w *bundleWriter) addFile(a Artifact) {
	f, err := os.Open(filepath.Join(w.dir, a.Name))
	if err == nil {
		h := sha256.New()
		n, cerr := io.Copy(h, f)
		f.Close()
		if cerr == nil {
			a.Size, a.SHA256 = n, hex.EncodeToString(h.Sum(nil))
		}
	}
	w.mu.Lock()
	w.man.Artifacts = append(w.man.Artifacts, a)
	w.mu.Unlock()
}

// finish writes manifest.json and returns the manifest.
func (w *bundleWriter) finish() (*Manifest, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.man.Finished = time.Now().UTC()
	b, err := json.MarshalIndent(&w.man, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(w.dir, "manifest.json"), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("monitor: bundle manifest: %w", err)
	}
	m := w.man
	return &m, nil
}

// newIncidentID returns a sortable, file-name-safe incident id:
// 20261129T103500.123Z-VM-SCENARIO-RAND.
func newIncidentID(vm, scenario string, at time.Time) string {
	var r [3]byte
	rand.Read(r[:]) //nolint:errcheck // crypto/rand does not fail on Linux
	id := at.UTC().Format("20060102T150405.000Z") + "-" + safeName(vm)
	if scenario != "" {
		id += "-" + safeName(scenario)
	}
	return id + "-" + hex.EncodeToString(r[:])
}

func safeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}

// ReadManifest reads a bundle directory's manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("monitor: %s/manifest.json: %w", dir, err)
	}
	if m.Schema != SchemaVersion {
		return nil, fmt.Errorf("monitor: %s/manifest.json: schema %d, this reader knows %d", dir, m.Schema, SchemaVersion)
	}
	return &m, nil
}

// PackBundle writes the bundle directory dir as a gzip-compressed tar
// stream to w; entries are named ID/FILE.
func PackBundle(dir string, w io.Writer) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	base := filepath.Base(dir)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: base + "/" + filepath.ToSlash(rel), Mode: 0o644, Size: fi.Size(), ModTime: fi.ModTime(), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, io.LimitReader(f, fi.Size()))
		f.Close()
		return err
	})
	if err != nil {
		return fmt.Errorf("monitor: pack %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}
