package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/acpidiag/acpidiag/monitor/deliver"
)

func TestStatusReadsTheSpool(t *testing.T) {
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	// A spool whose collector is unreachable (port 9 on loopback: closed).
	s, err := deliver.Open(deliver.Config{URL: "http://127.0.0.1:9/api/bundles", Dir: spool})
	if err != nil {
		t.Fatal(err)
	}
	s.Add(deliver.Meta{ID: "x1", VM: "v"}, func(w io.Writer) error { _, err := w.Write([]byte("abc")); return err })
	s.Close()
	cfg := filepath.Join(dir, "c.json")
	os.WriteFile(cfg, []byte(`{"vms":[],"scenarios":[],"sinks":[{"kind":"http","url":"http://127.0.0.1:9/api/bundles","spool":"`+spool+`"}]}`), 0o644)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"status", "--config", cfg}, &out, &errb, nil); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "queued 1") || !strings.Contains(out.String(), "delivered 0") {
		t.Errorf("output: %s", out.String())
	}
	if code := run(context.Background(), []string{"status"}, &out, &errb, nil); code != exitUsage {
		t.Errorf("status without --config: %d", code)
	}
}
