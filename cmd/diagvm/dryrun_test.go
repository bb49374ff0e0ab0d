package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// --dry-run checks every flag with the placement rules, writes the SSDT and
// prints the QEMU command line; nothing is started.
func TestRunDryRun(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	require.NoError(t, os.WriteFile(kernel, []byte("k"), 0o644))
	ctx := context.Background()
	code, out, stderr := runCLI(t, ctx, "run", "--dry-run", "--kernel", kernel, "--workdir", filepath.Join(dir, "w"), "--region", "ivshmem:0x11", "--size", "1M", "--machine", "pc")
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, out, "qemu-system-x86_64 ")
	assert.Contains(t, out, "ivshmem-plain,id=acpidiag-ivshmem,memdev=acpidiag-region,bus=pci.0,addr=0x11")
	assert.Contains(t, out, "size=1048576")
	assert.FileExists(t, filepath.Join(dir, "w", "diag.aml"))
	assert.NotContains(t, out, "virtio-balloon")

	code, out, stderr = runCLI(t, ctx, "run", "--dry-run", "--balloon", "--kernel", kernel, "--workdir", filepath.Join(dir, "wb"))
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, out, "virtio-balloon-pci,id=acpidiag-balloon,bus=pcie.0")

	code, _, stderr = runCLI(t, ctx, "run", "--dry-run", "--kernel", kernel, "--workdir", filepath.Join(dir, "w2"), "--region", "ivshmem:1", "--machine", "pc")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, "diagvm: run: --region ivshmem:1: clashes with the PIIX3")
}
