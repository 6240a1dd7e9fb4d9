#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Generate one random deny list in the shapes pc-http, HAProxy and nginx read.

    gen_prefixes.py OUTDIR V4 V6 [--seed N] [--deny PREFIX]...

Writes, in OUTDIR:
  rules.txt       portcullis rules ("deny 192.0.2.0/24"), V4 IPv4 + V6 IPv6 prefixes
                  plus every --deny PREFIX
  haproxy.lst     one prefix per line (HAProxy "acl NAME src -f FILE")
  nginx_geo.conf  "PREFIX 1;" lines (nginx "geo $var { include FILE; }")
  nginx_deny.conf "deny PREFIX;" lines (nginx access module; fine for a small list)

The random prefixes never cover 127.0.0.0/8 or ::1 (the benchmark's own
clients), hold no duplicate, and are deterministic for a seed. IPv4 lengths
follow what block lists hold (mostly /24 and /32, some /16 to /23); IPv6
prefixes sit in 2000::/3 with lengths /32 to /64 and some /128."""
import ipaddress
import os
import random
import sys


def main():
    args = sys.argv[1:]
    if len(args) < 3:
        sys.exit(__doc__)
    out, n4, n6 = args[0], int(args[1]), int(args[2])
    seed, extra = 1, []
    i = 3
    while i < len(args):
        if args[i] == "--seed":
            seed = int(args[i + 1])
        elif args[i] == "--deny":
            extra.append(str(ipaddress.ip_network(args[i + 1])))
        else:
            sys.exit(__doc__)
        i += 2
    rnd = random.Random(seed)
    lens4 = [16] * 2 + [20] * 3 + [22] * 5 + [24] * 50 + [32] * 40
    seen, v4 = set(), []
    while len(v4) < n4:
        ln = rnd.choice(lens4)
        a = rnd.randrange(1 << 32)
        a &= ~((1 << (32 - ln)) - 1) & 0xFFFFFFFF
        top = a >> 24
        if top in (0, 127) or top >= 224 or (a, ln) in seen:
            continue
        seen.add((a, ln))
        v4.append(f"{ipaddress.IPv4Address(a)}/{ln}")
    lens6 = [32] * 10 + [48] * 40 + [56] * 10 + [64] * 35 + [128] * 5
    seen6, v6 = set(), []
    while len(v6) < n6:
        ln = rnd.choice(lens6)
        a = (0x2 << 125) | rnd.randrange(1 << 125)  # 2000::/3
        a &= ~((1 << (128 - ln)) - 1) & ((1 << 128) - 1)
        if (a, ln) in seen6:
            continue
        seen6.add((a, ln))
        v6.append(f"{ipaddress.IPv6Address(a)}/{ln}")
    allp = extra + v4 + v6
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "rules.txt"), "w") as f:
        f.write("".join(f"deny {p}\n" for p in allp))
    with open(os.path.join(out, "haproxy.lst"), "w") as f:
        f.write("".join(f"{p}\n" for p in allp))
    with open(os.path.join(out, "nginx_geo.conf"), "w") as f:
        f.write("".join(f"{p} 1;\n" for p in allp))
    with open(os.path.join(out, "nginx_deny.conf"), "w") as f:
        f.write("".join(f"deny {p};\n" for p in allp))
    print(f"{len(allp)} prefixes ({len(v4)} IPv4 random, {len(v6)} IPv6 random, {len(extra)} given)")


if __name__ == "__main__":
    main()
