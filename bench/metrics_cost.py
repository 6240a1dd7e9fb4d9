#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What a /metrics scrape costs pc-http with a full per-source table.

    metrics_cost.py PORT [SOURCES] [REQUESTS]

Against a pc-http on 127.0.0.1:PORT started with a per-source limit (for
example `pc-http --listen 127.0.0.1:PORT --per-source-max 256`): opens one
connection from each of SOURCES distinct loopback sources (127.1.0.1,
127.1.0.2, ...; default 30000), each closed at once with a reset so no
TIME_WAIT is left, which puts SOURCES entries in the server's source table;
then sends REQUESTS (default 1000) "GET /metrics" on one connection from
127.0.0.73, pipelined 50 at a time, and times the answers. Prints the time per
scrape. Bounded: every socket operation has a 60 s timeout; at most 250000
sources (127.1.0.0/16 to 127.4.0.0/16).
"""
import socket
import struct
import sys
import time


def source(i):
    return "127.%d.%d.%d" % (1 + i // 65025, (i // 255) % 255, 1 + i % 255)


def fill(port, n):
    linger = struct.pack("ii", 1, 0)
    for i in range(n):
        s = socket.socket()
        s.settimeout(60)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        s.bind((source(i), 0))
        s.connect(("127.0.0.1", port))
        s.close()


def scrape(port, k, batch=50):
    """k answers to "GET /metrics", pipelined batch at a time (pc-http
    answers a whole flood too, letting requests wait while its send queue
    is past high water; batches keep this client's buffers small)."""
    s = socket.socket()
    s.settimeout(60)
    s.bind(("127.0.0.73", 0))
    s.connect(("127.0.0.1", port))
    req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    t0 = time.monotonic()
    got, tail = 0, b""
    while got < k:
        want = got + min(batch, k - got)
        s.sendall(req * (want - got))
        while got < want:
            d = s.recv(1 << 20)
            if not d:
                s.close()
                return got, time.monotonic() - t0
            chunk = tail + d
            got += chunk.count(b"HTTP/1.1 200")
            tail = chunk[-11:]  # a status line split across two reads
    dt = time.monotonic() - t0
    s.close()
    return got, dt


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    port = int(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 30000
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    if not 0 <= n <= 250000 or k < 1:
        sys.exit("SOURCES must be 0..250000 and REQUESTS >= 1")
    fill(port, n)
    got, dt = scrape(port, k)
    if got < k:
        sys.exit("only %d of %d answers" % (got, k))
    print("sources %d: %d pipelined /metrics in %.3f s, %.3f ms each" % (n, k, dt, dt * 1000 / k))


if __name__ == "__main__":
    main()
