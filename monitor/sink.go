package monitor

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Bundle is a finished incident bundle handed to the sinks: a directory
// (manifest.json and the artifacts) that the sink must not modify.
type Bundle struct {
	ID       string
	Dir      string
	Manifest *Manifest
}

// Sink takes finished bundles. Deliver must return only once the bundle
// is safe with the sink (written, or persisted to the sink's own spool for
// later delivery): the monitor removes Bundle.Dir after every sink has
// returned. It returns where the bundle went (for the "bundle" event).
// Deliver may be called from several goroutines at once.
//
// A remote sink (HTTP to a controller, a later issue) fits this shape:
// Deliver copies the bundle into its spool directory (or packs it with
// PackBundle) and returns; its own goroutine uploads and retries from the
// spool, and Close stops it, leaving undelivered bundles spooled.
type Sink interface {
	Name() string
	Deliver(ctx context.Context, b *Bundle) (string, error)
	Close() error
}

// SinksFromConfig builds the configured sinks.
func SinksFromConfig(cs []SinkConfig) ([]Sink, error) {
	var out []Sink
	for i, c := range cs {
		switch c.Kind {
		case "dir":
			out = append(out, &DirSink{Path: c.Path, Pack: c.Pack})
		case "http":
			s, err := NewHTTPSink(c)
			if err != nil {
				for _, o := range out {
					o.Close()
				}
				return nil, fmt.Errorf("monitor: sinks[%d]: %w", i, err)
			}
			out = append(out, s)
		default:
			for _, o := range out {
				o.Close()
			}
			return nil, fmt.Errorf("monitor: sinks[%d]: unknown kind %q", i, c.Kind)
		}
	}
	return out, nil
}

// DirSink writes each bundle as Path/ID/ (and Path/ID.tar.gz with Pack).
// The directory appears atomically: it is copied to Path/.ID.partial and
// renamed.
type DirSink struct {
	Path string
	Pack bool
}

// Name implements Sink.
func (s *DirSink) Name() string { return "dir:" + s.Path }

// Deliver implements Sink.
func (s *DirSink) Deliver(ctx context.Context, b *Bundle) (string, error) {
	if err := os.MkdirAll(s.Path, 0o755); err != nil {
		return "", fmt.Errorf("monitor: dir sink: %w", err)
	}
	final := filepath.Join(s.Path, b.ID)
	if _, err := os.Stat(final); err == nil {
		// Delivered before (redelivery after a restart): only the packed
		// copy may be missing.
		if s.Pack {
			if _, err := os.Stat(final + ".tar.gz"); err != nil {
				if err := writePack(final, final+".tar.gz"); err != nil {
					return "", err
				}
			}
		}
		return final, nil
	}
	// The packed copy is written first, so that a reader who sees Path/ID/
	// appear also finds Path/ID.tar.gz complete.
	if s.Pack {
		if err := writePack(b.Dir, final+".tar.gz"); err != nil {
			return "", err
		}
	}
	tmp := filepath.Join(s.Path, "."+b.ID+".partial")
	os.RemoveAll(tmp)
	if err := copyTree(b.Dir, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("monitor: dir sink: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("monitor: dir sink: %w", err)
	}
	return final, nil
}

// Close implements Sink.
func (s *DirSink) Close() error { return nil }

// writePack packs the bundle directory dir into tgz atomically.
func writePack(dir, tgz string) error {
	f, err := os.Create(tgz + ".partial")
	if err != nil {
		return fmt.Errorf("monitor: dir sink: %w", err)
	}
	err = PackBundle(dir, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tgz+".partial", tgz)
	}
	if err != nil {
		os.Remove(tgz + ".partial")
		return fmt.Errorf("monitor: dir sink: %w", err)
	}
	return nil
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		// Same file system: a hard link is enough (the staging copy is
		// removed, the sink's stays).
		if err := os.Link(p, target); err == nil {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
