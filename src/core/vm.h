/* SPDX-License-Identifier: MIT */
/* Virtual-memory hints (vm_posix.c, vm_win.c). */
#ifndef PC_CORE_VM_H
#define PC_CORE_VM_H

#include <stddef.h>

/* Ask the kernel to back [addr, addr + len) with huge pages (Linux:
 * madvise(MADV_HUGEPAGE), honoured when transparent huge pages are in
 * "madvise" or "always" mode). Best effort: a platform without the hint, or a
 * refusal, leaves the range in small pages, which work the same. Call it
 * before first touching the range. Any thread. */
void pc__vm_hint_huge(void *addr, size_t len);

#endif
