/* SPDX-License-Identifier: MIT */
/* The kernel filter's program, and beside it a second one the kernel's
 * verifier refuses (a read past the end of the socket buffer's context):
 * to the loader, this object is what ours looks like to a kernel whose
 * verifier refuses it. Embedded under the library's symbol into
 * test_kfilter_ebpf_refused only (tests/CMakeLists.txt). The 32 reads before
 * the bad one make the verifier's log a few kilobytes long, its verdict at
 * the end, as a refusal of the real program's would be. */
#include "kfilter.bpf.c"

SEC("socket")
int refused(struct __sk_buff *skb)
{
    volatile __u32 *len = &skb->len;
    __u32 sum = 0;
#pragma unroll
    for (int i = 0; i < 32; i++)
        sum += *len;
    return (int)(sum + *(volatile __u32 *)((char *)skb + 4000));
}
