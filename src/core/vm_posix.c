/* SPDX-License-Identifier: MIT */
/* Virtual-memory hints on POSIX (vm.h): madvise on Linux. */
#include "vm.h"

#ifdef __linux__
#include <sys/mman.h>
#endif

void pc__vm_hint_huge(void *addr, size_t len)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    (void)madvise(addr, len, MADV_HUGEPAGE);
#else
    (void)addr, (void)len;
#endif
}
