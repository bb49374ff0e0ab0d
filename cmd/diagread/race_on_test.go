//go:build race

package main

// raceEnabled: the race detector multiplies memory use (the RSS bounds
// measure the test binary re-executed as diagread, instrumented too).
const raceEnabled = true
