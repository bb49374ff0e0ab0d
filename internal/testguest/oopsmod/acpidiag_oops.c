// SPDX-License-Identifier: GPL-2.0
/*
 * acpidiag test guest: a module that breaks the kernel in a chosen way when
 * loaded, so the guest produces real kernel reports on a stock Debian kernel
 * (which has no lkdtm). Built against the Debian headers by
 * scripts/fetch-kernel.sh; loaded by the guest's /init from
 * /modules/extra/oops.ko with finit_module and these parameters:
 *
 *   mode=oops        (default) write through a NULL pointer, like lkdtm's
 *                    WRITE_KERN: "BUG: kernel NULL pointer dereference" /
 *                    "Oops:". Boot with oops=panic to turn it into a panic.
 *   mode=hang        sleep in TASK_UNINTERRUPTIBLE (D state) for seconds=N
 *                    in the loading task: the kernel's hung-task detector
 *                    reports "INFO: task COMM:PID blocked for more than S
 *                    seconds." (with a low kernel.hung_task_timeout_secs)
 *                    and SysRq w lists the task with its stack.
 *   mode=softlockup  spin with preemption disabled for seconds=N: the soft
 *                    lockup detector reports "watchdog: BUG: soft lockup -
 *                    CPU#C stuck for Ns! [COMM:PID]" after 2 *
 *                    watchdog_thresh seconds (boot with watchdog_thresh=1).
 *   mode=rcustall    hold an RCU read lock for seconds=N, busy but yielding
 *                    the CPU (cond_resched), after asking for a grace
 *                    period: the grace period cannot end, and RCU's stall
 *                    detector reports "rcu: INFO: rcu_preempt detected
 *                    stalls on CPUs/tasks:" with this task among the
 *                    blocked ones and its stack, after
 *                    rcupdate.rcu_cpu_stall_timeout seconds (set it to 3).
 *                    The rest of the guest runs on.
 *   mode=hardlockup  spin with interrupts disabled for seconds=N (counted
 *                    in mdelay(1) steps: jiffies stop with the timer
 *                    interrupt): a hard lockup. The kernel's own detector
 *                    needs a PMU NMI, which QEMU's TCG lacks, so nothing
 *                    in the guest reports it meanwhile; the host sees a
 *                    busy vCPU whose registers show kernel mode with IF
 *                    clear, and SysRq (an interrupt) gets no answer.
 *
 * hang, softlockup, rcustall and hardlockup end after N seconds; the init then fails with
 * -ECANCELED so the module does not stay loaded and can be loaded again.
 */
#include <linux/delay.h>
#include <linux/init.h>
#include <linux/irqflags.h>
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/preempt.h>
#include <linux/printk.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/string.h>

static char *mode = "oops";
module_param(mode, charp, 0444);
MODULE_PARM_DESC(mode, "oops (default), hang, softlockup, rcustall or hardlockup");

static uint seconds = 60;
module_param(seconds, uint, 0444);
MODULE_PARM_DESC(seconds, "how long hang, softlockup, rcustall and hardlockup last (default 60)");

/* acpidiag_hang sleeps uninterruptibly: the frame the blocking stack names. */
static noinline void acpidiag_hang(unsigned int secs)
{
	unsigned long end = jiffies + secs * HZ;

	pr_err("acpidiag_oops: hanging in D state for %us (%s:%d)\n", secs, current->comm, task_pid_nr(current));
	while (time_before(jiffies, end)) {
		set_current_state(TASK_UNINTERRUPTIBLE);
		schedule_timeout(end - jiffies);
	}
	__set_current_state(TASK_RUNNING);
	pr_err("acpidiag_oops: hang over after %us\n", secs);
}

/* acpidiag_softlockup spins without ever scheduling: the CPU it runs on is stuck. */
static noinline void acpidiag_softlockup(unsigned int secs)
{
	unsigned long end = jiffies + secs * HZ;

	pr_err("acpidiag_oops: spinning with preemption disabled for %us (%s:%d, CPU %d)\n", secs, current->comm,
	       task_pid_nr(current), raw_smp_processor_id());
	preempt_disable();
	while (time_before(jiffies, end))
		mdelay(1);
	preempt_enable();
	pr_err("acpidiag_oops: soft lockup over after %us\n", secs);
}

/*
 * acpidiag_rcustall is an RCU reader that does not end: a preemptible-RCU
 * reader may be preempted, so the task yields the CPU while it holds the
 * grace period back, and the stall report lists it as a blocked task.
 */
static noinline void acpidiag_rcustall(unsigned int secs)
{
	unsigned long end = jiffies + secs * HZ;

	pr_err("acpidiag_oops: holding an RCU read lock for %us (%s:%d)\n", secs, current->comm, task_pid_nr(current));
	rcu_read_lock();
	start_poll_synchronize_rcu(); /* a grace period that must wait for this reader */
	while (time_before(jiffies, end)) {
		mdelay(1);
		cond_resched();
	}
	rcu_read_unlock();
	pr_err("acpidiag_oops: RCU read lock released after %us\n", secs);
}

/* acpidiag_hardlockup spins with interrupts off: no tick, no IPI, no SysRq. */
static noinline void acpidiag_hardlockup(unsigned int secs)
{
	unsigned long i, n = secs * 1000UL;

	pr_err("acpidiag_oops: spinning with interrupts disabled for %us (%s:%d, CPU %d)\n", secs, current->comm,
	       task_pid_nr(current), raw_smp_processor_id());
	local_irq_disable();
	for (i = 0; i < n; i++)
		mdelay(1);
	local_irq_enable();
	pr_err("acpidiag_oops: hard lockup over after %us\n", secs);
}

static int __init acpidiag_oops_init(void)
{
	int *volatile p = NULL;

	if (!strcmp(mode, "oops")) {
		/* as before the modes existed: the oops is in this function */
		pr_emerg("acpidiag_oops: writing through a NULL pointer\n");
		*p = 1;
		return 0;
	}
	if (!strcmp(mode, "hang")) {
		acpidiag_hang(seconds);
		return -ECANCELED;
	}
	if (!strcmp(mode, "softlockup")) {
		acpidiag_softlockup(seconds);
		return -ECANCELED;
	}
	if (!strcmp(mode, "rcustall")) {
		acpidiag_rcustall(seconds);
		return -ECANCELED;
	}
	if (!strcmp(mode, "hardlockup")) {
		acpidiag_hardlockup(seconds);
		return -ECANCELED;
	}
	pr_err("acpidiag_oops: unknown mode=%s (want oops, hang, softlockup, rcustall or hardlockup)\n", mode);
	return -EINVAL;
}
module_init(acpidiag_oops_init);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("acpidiag test guest: oops, hang in D state, soft or hard lockup, or RCU stall on load");
