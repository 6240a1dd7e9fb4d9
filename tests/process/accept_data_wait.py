#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: pc-http's accept data wait, as a user runs it.

    accept_data_wait.py BIN_DIR [--backend NAME]

  default   pc-http without the flag prints "accept data wait: up to 3 s" and
            /metrics has pc_accept_data_wait_seconds 3; 8 clients connect and
            send nothing: 0.5 s later none is accepted (each /metrics request
            is one accepted connection, counted in the expected figure); then
            each sends its request and gets a 200 at once;
  silent    pc-http --accept-data-wait 1: a client that never sends is
            accepted after about a second (pc_connections_accepted_total,
            less the /metrics requests), and a request it sends then is
            answered;
  off       pc-http --accept-data-wait 0: no announce line, the gauge is 0,
            and 8 silent clients are accepted at once.

Exit 0 on pass, 1 on failure (every failed check printed). Bounded: an
overall alarm (40 s) ends the run, the servers are killed on every exit
path. Python 3 standard library only.
"""

import os
import socket
import sys
import time

from proclib import GET_ROOT, Checks, Server, backend_main, expect_200, metric  # noqa: E402


def accepted_after(port, before, k, limit):
    """Poll pc_connections_accepted_total until k connections beyond before
    and the polls' own (each /metrics request is an accepted connection)
    were accepted, or limit seconds pass: (last value, polls)."""
    n, polls, t0 = None, 0, time.monotonic()
    while before is not None and time.monotonic() - t0 < limit:
        polls += 1
        n = metric(port, "pc_connections_accepted_total")
        if n is not None and n >= before + polls + k:
            break
        time.sleep(0.05)
    return n, polls


def connect_silent(port, n):
    return [socket.create_connection(("127.0.0.1", port), 5) for _ in range(n)]


def run(a):
    check = Checks()

    http = os.path.join(a.bin_dir, "pc-http")
    base = [http, "--listen", "127.0.0.1:0", "--threads", "2", "--backend", a.backend]

    srv = Server(base)
    try:
        port = srv.wait_listening(10)
        check("accept data wait: up to 3 s" in "\n".join(srv.lines), "default: announced, 3 s")
        check(metric(port, "pc_accept_data_wait_seconds") == 3, "default: /metrics gauge 3")
        before = metric(port, "pc_connections_accepted_total")  # counts its own connection
        socks = connect_silent(port, 8)
        time.sleep(0.5)
        held = metric(port, "pc_connections_accepted_total")
        check(before is not None and held == before + 1,
              "default: 8 silent clients, none accepted after 0.5 s (%s -> %s, 1 is /metrics)"
              % (before, held))
        t0 = time.monotonic()
        for s in socks:
            s.sendall(GET_ROOT)
        for s in socks:
            expect_200(s)
            s.close()
        took = time.monotonic() - t0
        check(took < 1.0, "default: their requests answered at once (%.3f s)" % took)
        after = metric(port, "pc_connections_accepted_total")
        check(after == held + 9, "default: the 8 then accepted (%s -> %s)" % (held, after))
    finally:
        srv.kill()

    srv = Server(base + ["--accept-data-wait", "1"])
    try:
        port = srv.wait_listening(10)
        check(metric(port, "pc_accept_data_wait_seconds") == 1, "silent: /metrics gauge 1")
        before = metric(port, "pc_connections_accepted_total")
        t0 = time.monotonic()
        s = connect_silent(port, 1)[0]
        n, polls = accepted_after(port, before, 1, 5)
        took = time.monotonic() - t0
        check(before is not None and n == before + polls + 1 and took >= 0.8,
              "silent: the silent client accepted after the wait (%.2f s)" % took)
        s.sendall(GET_ROOT)
        expect_200(s)
        s.close()
    finally:
        srv.kill()

    srv = Server(base + ["--accept-data-wait", "0"])
    try:
        port = srv.wait_listening(10)
        check("accept data wait" not in "\n".join(srv.lines), "off: no announce line")
        check(metric(port, "pc_accept_data_wait_seconds") == 0, "off: /metrics gauge 0")
        before = metric(port, "pc_connections_accepted_total")
        socks = connect_silent(port, 8)
        n, polls = accepted_after(port, before, 8, 2)
        check(before is not None and n == before + polls + 8,
              "off: 8 silent clients accepted at once (%s -> %s in %d polls)" % (before, n, polls))
        for s in socks:
            s.close()
    finally:
        srv.kill()
    return check.failures


if __name__ == "__main__":
    sys.exit(backend_main(run, 40))
