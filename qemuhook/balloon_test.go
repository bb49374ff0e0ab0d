package qemuhook

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/qmp"
	"github.com/acpidiag/acpidiag/ssdt"
)

func TestBalloonArgs(t *testing.T) {
	dir := t.TempDir()
	rc := ssdt.DefaultConfig()
	for machine, bus := range map[Machine]string{"q35": "pcie.0", "pc": "pci.0"} {
		cfg := Config{Machine: machine, Balloon: true,
			Channel: Channel{SSDTPath: filepath.Join(dir, "diag.aml"), Region: rc, BackingPath: filepath.Join(dir, "region")}}
		args, err := cfg.Args()
		require.NoError(t, err)
		assert.Contains(t, args, "virtio-balloon-pci,id=acpidiag-balloon,bus="+bus)
		cfg.Balloon = false
		args, err = cfg.Args()
		require.NoError(t, err)
		for _, a := range args {
			assert.NotContains(t, a, "virtio-balloon")
		}
	}
	// The id is reserved.
	cfg := Config{Extra: []string{"-device", "virtio-balloon-pci,id=" + BalloonID}}
	assert.ErrorContains(t, cfg.validateExtra(cfg.channel()), "reserved")
}

// TestBalloonRealQEMU: QEMU accepts the balloon next to the channel's
// ivshmem slot, and its QOM properties answer.
func TestBalloonRealQEMU(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	dir := shortTempDir(t)
	rc := ssdt.DefaultConfig()
	cfg := Config{MemoryMB: 128, Workdir: dir, Balloon: true,
		Channel:   Channel{SSDTPath: testSSDT(t, dir, rc), Region: rc, BackingPath: filepath.Join(dir, "region")},
		QMPSocket: filepath.Join(dir, "qmp"), Extra: []string{"-S"}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := Start(ctx, cfg, StartOptions{})
	require.NoError(t, err)
	defer p.Kill()
	q, err := qmp.Dial(ctx, cfg.QMPSocket, qmp.Options{})
	require.NoError(t, err)
	defer q.Close()
	var balloon *pciDevice
	devs := queryPCI(t, q)
	for i := range devs {
		if devs[i].QdevID == BalloonID {
			balloon = &devs[i]
		}
	}
	require.NotNil(t, balloon, "balloon not in query-pci: %+v", devs)
	assert.Equal(t, 0x1af4, balloon.ID.Vendor)
	assert.NotEqual(t, int(rc.Slot), balloon.Slot)
	path := "/machine/peripheral/" + BalloonID
	require.NoError(t, q.Execute(ctx, "qom-set", map[string]any{"path": path, "property": "guest-stats-polling-interval", "value": 2}, nil))
	var iv int
	require.NoError(t, q.Execute(ctx, "qom-get", map[string]any{"path": path, "property": "guest-stats-polling-interval"}, &iv))
	assert.Equal(t, 2, iv)
}
