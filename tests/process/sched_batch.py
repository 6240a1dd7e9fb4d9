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
  kept      pc-http started under another policy (root: chrt -r 1, SCHED_RR;
            else chrt -i 0, SCHED_IDLE): the threads keep it, the log says
            why once, the announce line says batch was not had, the gauge
            is 0, and it serves;
  refused   pc-http --sched fast exits non-zero naming the flag.

Exit 0 on pass, 1 on failure (every failed check printed). Bounded: an
overall alarm (40 s) ends the run, the servers are killed on every exit
path. Python 3 standard library only.
"""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time

from proclib import GET_ROOT, Checks, Server, backend_main, expect_200, metric  # noqa: E402

NAMES = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_BATCH: "SCHED_BATCH", os.SCHED_IDLE: "SCHED_IDLE",
         os.SCHED_RR: "SCHED_RR", os.SCHED_FIFO: "SCHED_FIFO"}


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
    """The two workers and the accept thread all under want. Each thread
    names itself as it starts: polled for up to 2 s."""
    deadline = time.monotonic() + 2
    while True:
        p = policies(pid)
        good = p.get("pc-worker") == [want, want] and p.get("pc-accept") == [want]
        if good or time.monotonic() > deadline:
            return good, p
        time.sleep(0.05)


def wait_line(srv, text, limit=2.0):
    """The server's output has a line with text (stdout and stderr are read
    by two threads: a log line may come in after 'listening on')."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if any(text in line for line in list(srv.lines)):
            return True
        time.sleep(0.05)
    return False


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

    # started under another policy: SCHED_RR when this may take it (root),
    # else SCHED_IDLE (which batch would raise)
    if shutil.which("chrt") is None:
        print("kept: skipped (no chrt)")
    else:
        pol, flag = ("SCHED_RR", ["-r", "1"]) if os.geteuid() == 0 else ("SCHED_IDLE", ["-i", "0"])
        srv = Server(["chrt"] + flag + base)
        try:
            port = srv.wait_listening(10)
            check(wait_line(srv, "keep " + pol), "kept: the log says %s is kept" % pol)
            text = "\n".join(srv.lines)
            check(text.count("sched_batch") == 1, "kept: said once:\n%s" % srv.tail())
            check("scheduling: default (batch not had; see the log)" in text, "kept: announced")
            check(metric(port, "pc_sched_batch") == 0, "kept: /metrics gauge 0")
            good, p = server_threads(srv.proc.pid, pol)
            check(good, "kept: server threads keep %s (%s)" % (pol, p))
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
