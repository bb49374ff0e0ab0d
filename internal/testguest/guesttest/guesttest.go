// Package guesttest holds the steps every real-guest test repeats: find
// QEMU and the cached guest kernel (skipped locally when missing, failed
// under CI=true, where .ci/run installs both) and build the test guest's
// initramfs once per test binary. It is for tests only.
package guesttest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/internal/testguest"
)

// Kernel returns the cached guest kernel (scripts/fetch-kernel.sh) after
// checking that qemu-system-x86_64 is installed. Without either the test
// is skipped, or failed under CI.
func Kernel(tb testing.TB) testguest.KernelFiles {
	tb.Helper()
	fixtures.RequireTool(tb, "qemu-system-x86_64")
	k, err := testguest.Kernel()
	if errors.Is(err, testguest.ErrNoKernel) {
		if fixtures.InCI() {
			tb.Fatalf("guest kernel required under CI: %v", err)
		}
		tb.Skipf("guest kernel not cached: %v", err)
	}
	if err != nil {
		tb.Fatalf("guest kernel: %v", err)
	}
	return k
}

// build is the test binary's one initramfs build (testguest.Build reuses
// its on-disk cache, but still hashes the inputs on every call).
var build struct {
	once   sync.Once
	initrd testguest.Initramfs
	err    error
}

// Require returns the guest kernel (see Kernel) and the test guest's
// initramfs, built at most once per test binary.
func Require(tb testing.TB) (testguest.KernelFiles, testguest.Initramfs) {
	tb.Helper()
	k := Kernel(tb)
	build.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		build.initrd, build.err = testguest.Build(ctx, "")
	})
	if build.err != nil {
		tb.Fatalf("test guest initramfs: %v", build.err)
	}
	return k, build.initrd
}
