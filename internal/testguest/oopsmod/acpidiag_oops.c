// SPDX-License-Identifier: GPL-2.0
/*
 * acpidiag test guest: a module that oopses when loaded (a write through a
 * NULL pointer, like lkdtm's WRITE_KERN), so the guest's acpidiag.mode=oops
 * produces a real "BUG: kernel NULL pointer dereference" / "Oops:" on a
 * stock Debian kernel, which has no lkdtm. Built against the Debian headers
 * by scripts/fetch-kernel.sh; loaded by the guest's /init from
 * /modules/extra/oops.ko. Boot with oops=panic to turn the oops into a panic.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/printk.h>

static int __init acpidiag_oops_init(void)
{
	int *volatile p = NULL;

	pr_emerg("acpidiag_oops: writing through a NULL pointer\n");
	*p = 1;
	return 0;
}
module_init(acpidiag_oops_init);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("acpidiag test guest: oops on load");
