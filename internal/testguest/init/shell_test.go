package main

import (
	"strings"
	"testing"
	"time"
)

func TestShellLine(t *testing.T) {
	now := time.Date(2026, 1, 2, 10, 11, 12, 0, time.UTC)
	out, hang := shellLine("uptime\n", now, "125.30 100.00\n", "0.50 0.25 0.10 1/50 99\n")
	if hang || out != " 10:11:12 up 2 min,  load average: 0.50, 0.25, 0.10\n# " {
		t.Fatalf("uptime: %q %v", out, hang)
	}
	if out, _ := shellLine("echo hi there\n", now, "", ""); out != "hi there\n# " {
		t.Fatalf("echo: %q", out)
	}
	if out, _ := shellLine("upt\x15uptime\n", now, "60", "1 2 3"); !strings.Contains(out, "load average: 1, 2, 3") {
		t.Fatalf("killed line prefix must be dropped: %q", out)
	}
	if out, _ := shellLine("ls\n", now, "", ""); !strings.Contains(out, "not found") {
		t.Fatalf("unknown: %q", out)
	}
	if _, hang := shellLine("hang\n", now, "", ""); !hang {
		t.Fatal("hang must hang")
	}
	if out, _ := shellLine("cat /proc/self/stat\n", now, "", ""); !strings.Contains(out, ") ") || !strings.HasSuffix(out, "# ") {
		t.Fatalf("cat /proc: %q", out)
	}
	if out, _ := shellLine("cat /proc/nonexistent\n", now, "", ""); !strings.HasPrefix(out, "cat: ") {
		t.Fatalf("cat missing: %q", out)
	}
	if out, _ := shellLine("cat /etc/passwd\n", now, "", ""); !strings.Contains(out, "not found") {
		t.Fatalf("cat outside /proc: %q", out)
	}
	if out, _ := shellLine("uptime\n", now, "", ""); !strings.Contains(out, "load average: ?, ?, ?") {
		t.Fatalf("missing /proc data: %q", out)
	}
}
