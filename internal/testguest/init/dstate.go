package main

import (
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// dstateArg is argv[1] of the child that blocks in D state: /init dstateArg.
const dstateArg = "--acpidiag-dstate"

// dstateMode starts a child process that blocks in the kernel in D state
// for good; the guest lives on. SysRq w shows it ("state:D", its stack in
// the vfork wait).
func dstateMode() {
	logf("blocking a task in D state now (a child whose vfork child never execs)")
	cmd, err := startChild(dstateArg)
	if err != nil {
		logf("dstate child: %v", err)
		return
	}
	logf("dstate child pid %d", cmd.Process.Pid)
}

// dstateChild vforks a child that never execs nor exits: the parent
// thread then waits in the kernel (wait_for_vfork_done, a killable D
// sleep) for as long as the vfork child lives. The vfork child shares
// this process's memory and stack, so it does nothing but pause(2); this
// process is thrown away (the real thing a D-state task is: stuck in the
// kernel, not runnable, not interruptible by ordinary signals).
func dstateChild() {
	runtime.LockOSThread()
	pid, _, errno := unix.RawSyscall(unix.SYS_VFORK, 0, 0, 0)
	if errno != 0 {
		os.Exit(1)
	}
	if pid == 0 {
		for {
			unix.RawSyscall(unix.SYS_PAUSE, 0, 0, 0)
		}
	}
	os.Exit(0) // not reached while the vfork child lives
}
