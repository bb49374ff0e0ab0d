package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsageExits2(t *testing.T) {
	for _, args := range [][]string{nil, {"nope"}, {"serve"}, {"serve", "--listen", "127.0.0.1:0"}, {"analyze"}, {"analyze", "a", "b"}, {"serve", "--bogus"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb, nil); code != exitUsage {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, errb.String())
		}
	}
}

func TestServeAndAnalyze(t *testing.T) {
	store := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan int, 1)
	var out, errb bytes.Buffer
	go func() {
		done <- run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--store", store}, &out, &errb, ready)
	}()
	select {
	case <-ready:
	case code := <-done:
		t.Fatalf("serve exited %d: %s", code, errb.String())
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("serve: %d %s", code, errb.String())
	}
	var o2, e2 bytes.Buffer
	if code := run(context.Background(), []string{"analyze", store}, &o2, &e2, nil); code != exitOK || !strings.Contains(o2.String(), "no bundle") {
		t.Fatalf("analyze empty store: %d %q %q", code, o2.String(), e2.String())
	}
	empty := filepath.Join(t.TempDir(), "x")
	os.Mkdir(empty, 0o755)
	if code := run(context.Background(), []string{"analyze", empty}, &o2, &e2, nil); code != exitError || !strings.Contains(e2.String(), "neither a bundle") {
		t.Fatalf("analyze of a plain dir: %d %q", code, e2.String())
	}
}
