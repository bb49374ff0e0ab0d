package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// No guest answers (the region's ticks never move): exit 1 after the
// timeout, with the verdict that explains it. The answered path runs
// against a real guest in TestE2EDiagbeat (internal/testguest).
func TestPingNoAnswerCLI(t *testing.T) {
	ctx := context.Background()
	p := writeFile(t, "r", regionImage(8192, 1, time.Time{}, time.Time{}))
	start := time.Now()
	code, out, stderr := runCapture(ctx, "ping", "--timeout", "400ms", "--k", "1", p)
	assert.Equal(t, exitNotAlive, code, stderr)
	assert.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond)
	assert.Contains(t, out, "ping:        no answer within 400ms (seq 1)")
	assert.Contains(t, out, "verdict:     stale")

	code, out, _ = runCapture(ctx, "ping", "--json", "--timeout", "100ms", p)
	assert.Equal(t, exitNotAlive, code)
	var j map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &j))
	assert.Equal(t, false, j["answered"])
	assert.Equal(t, float64(2), j["seq"], "a second ping posts the next sequence number")
	assert.NotNil(t, j["verdict"])
}

func TestPingBadUsage(t *testing.T) {
	ctx := context.Background()
	p := writeFile(t, "r", regionImage(8192, 10, time.Time{}, time.Time{}))
	for _, args := range [][]string{{"ping"}, {"ping", "--timeout", "0s", p}, {"ping", "/nonexistent/region"}, {"ping", p, p}} {
		code, _, _ := runCapture(ctx, args...)
		assert.Equal(t, exitBadInput, code, "%q", args)
	}
}
