package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseOptionsDefaults(t *testing.T) {
	o, problems := parseOptions("BOOT_IMAGE=/vmlinuz console=ttyS0 panic=-1 quiet")
	require.Empty(t, problems)
	assert.Equal(t, defaultOptions(), o)
	assert.Equal(t, "alive", o.mode)
	assert.Equal(t, 500*time.Millisecond, o.appPeriod)
	assert.Equal(t, "testapp", o.appTag)
	assert.True(t, o.app)
	assert.True(t, o.pvpanic, "pvpanic modules load by default")
	assert.Zero(t, o.lastBoot, "the mode acts on every boot by default")
}

func TestParseOptionsAll(t *testing.T) {
	o, problems := parseOptions("console=ttyS0 acpidiag.mode=livelock acpidiag.after=2500ms acpidiag.app_period=100ms " +
		"acpidiag.app_slot=7 acpidiag.app_tag=12345678 acpidiag.debug=1 acpidiag.debug_period=1s acpidiag.app=0 " +
		"acpidiag.pvpanic=0 acpidiag.last_boot=2 " +
		"acpidiag.diagbeat=1 acpidiag.diagbeat_period=2s acpidiag.healthy_for=0s acpidiag.diagbeat_region=fixed:0x10000000 " +
		"acpidiag.duration=90s\n")
	require.Empty(t, problems)
	assert.Equal(t, options{
		mode: "livelock", after: 2500 * time.Millisecond, app: false, appPeriod: 100 * time.Millisecond,
		appSlot: 7, appTag: "12345678", debug: true, debugPeriod: time.Second, pvpanic: false, lastBoot: 2,
		diagbeat: true, diagbeatPeriod: 2 * time.Second, diagbeatRegion: "fixed:0x10000000", duration: 90 * time.Second,
	}, o)
}

func TestParseOptionsBadValuesKeepDefaults(t *testing.T) {
	for _, tc := range []struct{ word, want string }{
		{"acpidiag.mode=explode", "want one of alive|panic|oops|livelock|reboot|poweroff|uhang"},
		{"acpidiag.after=soon", `bad option acpidiag.after="soon"`},
		{"acpidiag.after=-1s", "negative duration"},
		{"acpidiag.app_period=0s", "period below 1ms"},
		{"acpidiag.app_slot=8", "slot 8 out of range"},
		{"acpidiag.app_slot=-1", "slot -1 out of range"},
		{"acpidiag.app_tag=123456789", "longer than 8 bytes"},
		{"acpidiag.debug=maybe", `bad option acpidiag.debug="maybe"`},
		{"acpidiag.pvpanic=no-way", `bad option acpidiag.pvpanic="no-way"`},
		{"acpidiag.last_boot=-1", "negative boot count"},
		{"acpidiag.last_boot=two", `bad option acpidiag.last_boot="two"`},
		{"acpidiag.typo=1", "unknown option acpidiag.typo"},
		{"acpidiag.duration=500ms", "below 1s"},
		{"acpidiag.duration=long", `bad option acpidiag.duration="long"`},
	} {
		t.Run(tc.word, func(t *testing.T) {
			o, problems := parseOptions("console=ttyS0 " + tc.word)
			require.Len(t, problems, 1)
			assert.Contains(t, problems[0], tc.want)
			assert.Equal(t, defaultOptions(), o, "a bad value must leave the default")
		})
	}
}

func TestParseOptionsLastWins(t *testing.T) {
	o, problems := parseOptions("acpidiag.mode=panic acpidiag.mode=reboot")
	require.Empty(t, problems)
	assert.Equal(t, "reboot", o.mode)
}

// FuzzParseOptions: any command line gives valid options (a mode from the
// list, a slot in range, a tag that fits, positive periods), never a panic.
func FuzzParseOptions(f *testing.F) {
	f.Add("console=ttyS0 panic=-1 loglevel=4 acpidiag.mode=panic acpidiag.after=3s")
	f.Add("acpidiag.app_slot=7 acpidiag.app_tag=testapp acpidiag.app_period=100ms acpidiag.debug=1")
	f.Add("acpidiag.mode= acpidiag.after=-1ns acpidiag.app_slot=99999999999999999999 acpidiag.=")
	f.Fuzz(func(t *testing.T, cmdline string) {
		o, _ := parseOptions(cmdline)
		assert.Contains(t, modes, o.mode)
		assert.GreaterOrEqual(t, o.after, time.Duration(0))
		assert.GreaterOrEqual(t, o.appPeriod, time.Millisecond)
		assert.GreaterOrEqual(t, o.debugPeriod, time.Millisecond)
		assert.True(t, o.appSlot >= 0 && o.appSlot < 8, "slot %d", o.appSlot)
		assert.LessOrEqual(t, len(o.appTag), 8)
		assert.GreaterOrEqual(t, o.lastBoot, 0)
		assert.True(t, o.duration == 0 || o.duration >= time.Second, "duration %s", o.duration)
	})
}
