package main

import (
	"os"
	"os/exec"
	"time"
)

// oomArg is argv[1] of the child that exhausts memory: /init oomArg.
const oomArg = "--acpidiag-oom"

// startChild starts /init args... as a child process (the oom, dstate,
// hungtask and softlockup modes' throw-away processes), its output on the
// console.
func startChild(args ...string) (*exec.Cmd, error) {
	cmd := exec.Command("/init", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd, cmd.Start()
}

// oomMode runs the memory-eating child and waits for the kernel's OOM
// killer to kill it; the guest (and its heartbeat) lives on.
func oomMode() {
	logf("exhausting memory now (a child allocates until the OOM killer kills it)")
	cmd, err := startChild(oomArg)
	if err != nil {
		logf("oom child: %v", err)
		return
	}
	logf("oom child ended: %v", cmd.Wait())
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
