#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Hold idle TCP connections open against a server, for memory-per-connection
measurements (bench/http_vs_peers.sh).

    idle_conns.py HOST PORT COUNT [request|none]

Opens COUNT connections one after another. With "request", each first
completes one "GET /" (HTTP/1.1 keep-alive) so the server holds it as a
keep-alive connection between requests; with "none" no byte is sent. Prints
"ready N" once all are open, then waits for SIGTERM/SIGINT and closes them
all with a reset (SO_LINGER 0: no TIME_WAIT left behind to exhaust the
ephemeral ports of the next run). Prints "error ..." and exits 1 on failure.
"""
import signal
import socket
import struct
import sys
import time


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise OSError("closed before the response head")
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(rest) < length:
        d = s.recv(4096)
        if not d:
            raise OSError("closed in the response body")
        rest += d


def main():
    if len(sys.argv) < 4:
        print("usage: idle_conns.py HOST PORT COUNT [request|none]", file=sys.stderr)
        sys.exit(2)
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    request = len(sys.argv) > 4 and sys.argv[4] == "request"
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    socks = []
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    try:
        for _ in range(count):
            if stop:
                break
            s = socket.create_connection((host, port), timeout=10)
            socks.append(s)
            if request:
                s.sendall(req)
                read_response(s)
    except OSError as e:
        print("error after %d connections: %s" % (len(socks), e), flush=True)
        sys.exit(1)
    print("ready %d" % len(socks), flush=True)
    while not stop:
        time.sleep(0.2)
    linger = struct.pack("ii", 1, 0)
    for s in socks:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
