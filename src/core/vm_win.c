/* SPDX-License-Identifier: MIT */
/* Virtual-memory hints on Windows (vm.h): large pages need the "Lock pages
 * in memory" privilege and VirtualAlloc(MEM_LARGE_PAGES), not a hint on an
 * allocated range, so the hint does nothing here. */
#include "vm.h"

void pc__vm_hint_huge(void *addr, size_t len)
{
    (void)addr, (void)len;
}
