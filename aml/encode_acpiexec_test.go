package aml

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/stretchr/testify/require"
)

// wrapSSDT frames body with a minimal 36-byte SSDT header (revision 2) and
// a valid checksum. (Package acpi owns real table framing; it imports this
// package, so the tests here carry their own.)
func wrapSSDT(body []byte) []byte {
	h := make([]byte, 36, 36+len(body))
	copy(h, "SSDT")
	n := uint32(36 + len(body))
	h[4], h[5], h[6], h[7] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	h[8] = 2
	copy(h[10:], "ACPIDGGOLDEN  ")
	t := append(h, body...)
	var sum byte
	for _, c := range t {
		sum += c
	}
	t[9] = -sum
	return t
}

// runAcpiexec loads the table into acpiexec and runs cmds; it returns the
// combined output (acpiexec exits 0 even on errors: callers check the text).
func runAcpiexec(t *testing.T, table []byte, cmds string) string {
	t.Helper()
	acpiexec := fixtures.RequireTool(t, "acpiexec")
	p := filepath.Join(t.TempDir(), "t.aml")
	require.NoError(t, os.WriteFile(p, table, 0o644))
	out, err := exec.Command(acpiexec, "-vr", "-b", cmds, p).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return string(out)
}

// TestFieldSplitOffsetAcpiexec: an Offset() gap wider than one PkgLength is
// encoded as several reserved elements (iasl cannot compile it); ACPICA's
// interpreter adds them up and accesses the unit at the right address.
func TestFieldSplitOffsetAcpiexec(t *testing.T) {
	body := mustEncode(t,
		OperationRegion("OPR0", SystemMemory, Int(0x10000000), Int(0x10000000)),
		Field("OPR0", AnyAcc, NoLock, Preserve, Offset(0x4000000), FieldUnit("X", 8)),
		Method("MAIN", 0, NotSerialized, Store(Int(0x5A), NameString("X")), Return(NameString("X"))),
	)
	out := runAcpiexec(t, wrapSSDT(body), "execute MAIN")
	require.NotContains(t, out, "Error", out)
	require.Contains(t, out, "SystemMemory Write: Val 0000005A Addr 14000000 BitWidth 8", out)
	require.Contains(t, out, "[Integer] = 000000000000005A", out)
}

// TestDiagSizedAcpiexec runs the _TMP of the diag-sized table in acpiexec:
// the PCI config fields are preset (ids of ivshmem, BAR2 at 0xFE000000) and
// the dynamic SystemMemory region writes the header and tick words there.
func TestDiagSizedAcpiexec(t *testing.T) {
	acpiexec := fixtures.RequireTool(t, "acpiexec")
	dir := t.TempDir()
	p := filepath.Join(dir, "t.aml")
	require.NoError(t, os.WriteFile(p, wrapSSDT(mustEncode(t, diagSized()...)), 0o644))
	initf := filepath.Join(dir, "init.txt")
	require.NoError(t, os.WriteFile(initf, []byte("\\_SB.DIAG.VDID 0x11101AF4\n\\_SB.DIAG.BAR2 0xFE00000C\n\\_SB.DIAG.BAR3 0\n"), 0o644))
	out, err := exec.Command(acpiexec, "-vr", "-fi", initf, "-b", `execute \_TZ.DIAG._TMP; execute \_TZ.DIAG._TMP`, p).CombinedOutput()
	require.NoError(t, err, "%s", out)
	s := string(out)
	require.NotContains(t, s, "Error", s)
	// Header: MAGC at +0 ("ADG1"), RSIZ at +0xC; TCNT at +0x14 counts ticks.
	require.Contains(t, s, "SystemMemory Write: Val 31474441 Addr FE000000", s)
	require.Contains(t, s, "SystemMemory Write: Val 00001000 Addr FE00000C", s)
	require.Contains(t, s, "SystemMemory Write: Val 00000001 Addr FE000014", s)
	require.Contains(t, s, "SystemMemory Write: Val 00000002 Addr FE000014", s)
}
