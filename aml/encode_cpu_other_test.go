//go:build !unix

package aml

import "time"

// processCPU is not measured on this platform.
func processCPU() time.Duration { return 0 }
