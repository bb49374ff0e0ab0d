package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestUsage(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--tag", "web"}, "--slot -1: want 0..7"},
		{[]string{"--slot", "8", "--tag", "web"}, "--slot 8"},
		{[]string{"--slot", "1"}, "--tag"},
		{[]string{"--slot", "1", "--tag", "far-too-long"}, "--tag"},
		{[]string{"--slot", "1", "--tag", "web", "--every", "0s"}, "--every 0s"},
		{[]string{"--slot", "1", "--tag", "web", "--region", "ivshmem:0"}, "host bridge"},
		{[]string{"--slot", "1", "--tag", "web", "--region", "fixed:0xC0000000"}, "above 2 GiB"},
		{[]string{"--slot", "1", "--tag", "web", "--region", "fixed:0x10000000", "--size", "lots"}, "--size"},
		{[]string{"--bogus"}, "flag provided but not defined"},
	} {
		var out, errb bytes.Buffer
		code := run(ctx, tc.args, &out, &errb)
		assert.Equal(t, exitUsage, code, "%q: %s", tc.args, errb.String())
		assert.Contains(t, errb.String(), tc.msg, "%q", tc.args)
	}
	var out, errb bytes.Buffer
	assert.Equal(t, exitOK, run(ctx, []string{"--help"}, &out, &errb))
	assert.Contains(t, errb.String(), "--slot N --tag NAME")
}

// No ivshmem device at that slot on this host: exit 1 with the reason once
// --wait is over.
func TestNoRegion(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"--slot", "1", "--tag", "web", "--region", "ivshmem:0x1e", "--wait", "0s"}, &out, &errb)
	assert.Equal(t, exitError, code, errb.String())
	assert.Contains(t, errb.String(), "no ivshmem device")
}
