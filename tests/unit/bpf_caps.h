/* SPDX-License-Identifier: MIT */
/* For the eBPF tier's tests (tests/unit/test_kfilter_ebpf*.c): whether this
 * process holds CAP_BPF or CAP_SYS_ADMIN. A load refused with PC_EPERM skips
 * a test only without them: with them, the refusal is the program's (the
 * verifier answers EACCES too), and a skip would hide it. */
#ifndef PC_TEST_BPF_CAPS_H
#define PC_TEST_BPF_CAPS_H

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CAP_BPF
#define CAP_BPF 39
#endif

static inline int bpf_caps_held(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &h, d) != 0) return 0;
#define PC_CAP_EFF(c) ((d[(c) / 32].effective >> ((c) % 32)) & 1u)
    int held = PC_CAP_EFF(CAP_BPF) || PC_CAP_EFF(CAP_SYS_ADMIN);
#undef PC_CAP_EFF
    return held;
}

#endif
