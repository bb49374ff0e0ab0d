package ssdt_test

import (
	"encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/region"
	"github.com/acpidiag/acpidiag/ssdt"
)

var updateFixtures = flag.Bool("update-region", false, "rewrite fixtures/region/*.bin from fresh acpiexec runs")

// regionFixture is one region image written by the real generated AML under
// acpiexec, for the host-side decoder's tests.
type regionFixture struct {
	file    string
	machine string
	cfg     func() ssdt.Config
	host    bool // needs the \HSTW helper table
	cmds    func(tt tickTarget) []string
}

func small(c ssdt.Config) ssdt.Config { c.Size = 4096; return c }

var regionFixtures = []regionFixture{
	{
		file: "acpiexec_q35_ivshmem_tick2.bin", machine: "q35",
		cfg:  func() ssdt.Config { return small(ssdt.DefaultConfig()) },
		cmds: func(tt tickTarget) []string { return []string{tt.tick(), tt.tick()} },
	},
	{
		file: "acpiexec_q35_ivshmem_mailbox_ping.bin", machine: "q35", host: true,
		cfg: func() ssdt.Config { return small(ssdt.DefaultConfig()) },
		cmds: func(tt tickTarget) []string {
			b := tt.base
			return []string{tt.tick(),
				hostWrite(b+uint64(region.HostStampLo.Offset), 0x5E0A1B2C), hostWrite(b+uint64(region.HostStampHi.Offset), 0x19A),
				hostWrite(b+uint64(region.MbxCmd.Offset), region.CmdPing), hostWrite(b+uint64(region.MbxArg.Offset), 0xC0FFEE),
				hostWrite(b+uint64(region.MbxSeq.Offset), 1), tt.tick(), tt.tick()}
		},
	},
	{
		file: "acpiexec_pc_fixed_tick3_setperiod.bin", machine: "pc", host: true,
		cfg: func() ssdt.Config { return small(fixedConfig()) },
		cmds: func(tt tickTarget) []string {
			b := tt.base
			return []string{tt.tick(), hostWrite(b+uint64(region.MbxCmd.Offset), region.CmdSetPeriod),
				hostWrite(b+uint64(region.MbxArg.Offset), 50), hostWrite(b+uint64(region.MbxSeq.Offset), 3), tt.tick(), tt.tick()}
		},
	},
}

func TestRegionFixtures(t *testing.T) {
	// Regenerates every image from a fresh acpiexec run and compares it with
	// the committed file; Timer() differs run to run, so timer_lo is
	// compared only for being set.
	for _, f := range regionFixtures {
		t.Run(f.file, func(t *testing.T) {
			cfg := f.cfg()
			tt := buildTarget(t, cfg)
			var extra []string
			if f.host {
				extra = []string{hostSim(t)}
			}
			r := tt.run(t, f.machine, tt.goodInit(), extra, f.cmds(tt)...)
			img := r.image(tt.base, int(cfg.Size))
			path := filepath.Join(fixtures.Dir(), "region", f.file)
			if *updateFixtures {
				require.NoError(t, os.WriteFile(path, img, 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test ./acpi -run TestRegionFixtures -update-region")
			require.Len(t, want, int(cfg.Size))
			require.NotZero(t, binary.LittleEndian.Uint32(img[region.TimerLo.Offset:]))
			require.NotZero(t, binary.LittleEndian.Uint32(want[region.TimerLo.Offset:]))
			copy(img[region.TimerLo.Offset:region.TimerLo.Offset+4], want[region.TimerLo.Offset:])
			require.Equal(t, want, img)
		})
	}
}
