//go:build unix

package aml

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user + system) used by the process so
// far: benchmarks report it per op next to wall time, which on a shared,
// loaded machine also counts the time spent waiting for a CPU.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
