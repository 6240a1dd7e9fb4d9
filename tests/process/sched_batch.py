#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: pc-http's batch scheduling, as a user runs it.

    sched_batch.py BIN_DIR [--backend NAME]

  default   pc-http without the flag prints "scheduling: batch (SCHED_BATCH)",
            /metrics has pc_sched_batch 1, its two workers and its accept
            thread run under SCHED_BATCH, its main thread under SCHED_OTHER,
            and 200 connections from 8 clients at once are all answered;
  off       pc-http --sched default: no announce line, the gauge is 0, every
            thread under SCHED_OTHER;
  kept      pc-http started under SCHED_IDLE (chrt -i 0): the threads keep
            SCHED_IDLE, the log says why once, the announce line says batch
            was not had, the gauge is 0, and it serves;
  refused   pc-http --sched fast exits non-zero naming the flag.

Exit 0 on pass, 1 on failure (every failed check printed). Bounded: an
overall alarm (40 s) ends the run, the servers are killed on every exit
path. Python 3 standard library only.
"""

import os
import socket
import subprocess
import sys
import threading

from proclib import GET_ROOT, Checks, Server, backend_main, expect_200, metric  # noqa: E402

NAMES = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_BATCH: "SCHED_BATCH", os.SCHED_IDLE: "SCHED_IDLE"}


def policies(pid):
    """{thread name: [policy name, ...]} of the process's threads."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                name = f.read().strip()
            pol = os.sched_getscheduler(int(tid))
        except OSError:
            continue  # the thread ended meanwhile
        out.setdefault(name, []).append(NAMES.get(pol, str(pol)))
    return out


def server_threads(pid, want):
    """The two workers and the accept thread all under want (names are set
    by each thread as it starts; they are there once 'listening on' is
    printed, since the accept thread started before it)."""
    p = policies(pid)
    return p.get("pc-worker") == [want, want] and p.get("pc-accept") == [want], p


def churn(port, clients, each):
    """clients threads, each opening `each` connections one after the other
    with one request each: how many got their 200."""
    ok = [0] * clients

    def one(i):
        for _ in range(each):
            try:
                with socket.create_connection(("127.0.0.1", port), 5) as s:
                    s.sendall(GET_ROOT)
                    expect_200(s)
                    ok[i] += 1
            except Exception:  # noqa: BLE001 - counted as not answered
                pass

    ts = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    return sum(ok)


def run(a):
    check = Checks()

    http = os.path.join(a.bin_dir, "pc-http")
    base = [http, "--listen", "127.0.0.1:0", "--threads", "2", "--backend", a.backend]

    srv = Server(base)
    try:
        port = srv.wait_listening(10)
        check("scheduling: batch (SCHED_BATCH)" in "\n".join(srv.lines), "default: announced")
        check(metric(port, "pc_sched_batch") == 1, "default: /metrics gauge 1")
        good, p = server_threads(srv.proc.pid, "SCHED_BATCH")
        check(good, "default: workers and accept thread under SCHED_BATCH (%s)" % p)
        check(p.get("pc-http") == ["SCHED_OTHER"], "default: main thread left alone (%s)" % p)
        n = churn(port, 8, 25)
        check(n == 200, "default: 200 connections from 8 clients answered (%d)" % n)
    finally:
        srv.kill()

    srv = Server(base + ["--sched", "default"])
    try:
        port = srv.wait_listening(10)
        check("scheduling:" not in "\n".join(srv.lines), "off: no announce line")
        check(metric(port, "pc_sched_batch") == 0, "off: /metrics gauge 0")
        good, p = server_threads(srv.proc.pid, "SCHED_OTHER")
        check(good, "off: every server thread under SCHED_OTHER (%s)" % p)
    finally:
        srv.kill()

    srv = Server(["chrt", "-i", "0"] + base)
    try:
        port = srv.wait_listening(10)
        text = "\n".join(srv.lines)
        check(text.count("keep SCHED_IDLE") == 1, "kept: said once:\n%s" % srv.tail())
        check("scheduling: default (batch not had; see the log)" in text, "kept: announced")
        check(metric(port, "pc_sched_batch") == 0, "kept: /metrics gauge 0")
        good, p = server_threads(srv.proc.pid, "SCHED_IDLE")
        check(good, "kept: server threads keep SCHED_IDLE (%s)" % p)
        n = churn(port, 2, 10)
        check(n == 20, "kept: serves (%d of 20)" % n)
    finally:
        srv.kill()

    r = subprocess.run(base + ["--sched", "fast"], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10)
    err = r.stderr.decode("utf-8", "replace")
    check(r.returncode != 0 and "--sched" in err,
          "refused: --sched fast (exit %d, %r)" % (r.returncode, err[:200]))
    return check.failures


if __name__ == "__main__":
    sys.exit(backend_main(run, 40))
