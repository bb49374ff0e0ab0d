package main

import (
	"os"
	"os/exec"
	"time"
)

// oomArg is argv[1] of the child that exhausts memory: /init oomArg.
const oomArg = "--acpidiag-oom"

// oomMode runs the memory-eating child and waits for the kernel's OOM
// killer to kill it; the guest (and its heartbeat) lives on.
func oomMode() {
	logf("exhausting memory now (a child allocates until the OOM killer kills it)")
	cmd := exec.Command("/init", oomArg)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		logf("oom child: %v", err)
		return
	}
	err := cmd.Wait()
	logf("oom child ended: %v", err)
}

// oomChild makes itself the OOM killer's first choice and allocates and
// touches memory, 4 MiB at a time, until it is killed.
func oomChild() {
	os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0) //nolint:errcheck // best effort: it is the biggest process anyway
	var keep [][]byte
	for i := 0; ; i++ {
		b := make([]byte, 4<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(i)
		}
		keep = append(keep, b)
		if i%16 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}
