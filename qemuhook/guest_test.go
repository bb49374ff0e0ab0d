package qemuhook

import (
	"path/filepath"
	"testing"

	"github.com/acpidiag/acpidiag/internal/testguest/guesttest"
	"github.com/acpidiag/acpidiag/ssdt"
)

// guestConfig returns a Config booting the test guest with the channel,
// ERST, pvpanic, QMP and serial wired, in dir.
func guestConfig(t *testing.T, dir, appendArgs string) Config {
	t.Helper()
	k, ird := guesttest.Require(t)
	rc := ssdt.DefaultConfig()
	return Config{
		Machine: "q35", MemoryMB: 256, Workdir: dir,
		Kernel: k.Vmlinuz, Initrd: ird.Path, Append: appendArgs,
		Channel:   Channel{SSDTPath: testSSDT(t, dir, rc), Region: rc, BackingPath: filepath.Join(dir, "region")},
		ERSTPath:  filepath.Join(dir, "erst"),
		PVPanic:   true,
		QMPSocket: filepath.Join(dir, "qmp"), SerialSocket: filepath.Join(dir, "serial"),
	}
}
