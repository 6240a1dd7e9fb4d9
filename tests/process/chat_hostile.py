#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: pc-chat against clients that never read, and its flags.

    chat_hostile.py BIN_DIR [--backend NAME]

1. flags: --max-line 18446744073709551614 (and -2, which strtoull wraps to
   that) must be refused with exit 2, not start a server whose per-client
   line buffer size wrapped to 15 bytes.
2. memory cap: --max-buffered 1048576 --patience 200, 5 readers (reader 0
   talks), 8 clients that never read (4 KiB receive buffers). Only the
   non-readers may be kicked, and all of them are: no reader may lose its
   connection.
3. patience: --patience 500, 5 readers, 12 non-readers. "Everybody waits
   at most patience_ms for one that stopped reading": the readers must never
   go 3 s without receiving anything (12 sequential waits are 6 s).
Exit 0 on pass, 1 on failure. Python 3 standard library only; Linux."""

import os
import re
import selectors
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proclib import Fail, Server, errname, now, set_budget  # noqa: E402

HOST = "127.0.0.1"
LINE = b"line %07d padding-padding-padding\n"
WELCOME = b"* welcome\n"


BACKEND = []  # --backend NAME, passed on to pc-chat
TCP_ESTABLISHED = 1  # tcp_info.tcpi_state (linux/tcp.h)


def reset_by_server(s):
    """True once the server reset s (kicked): its TCP state left ESTABLISHED."""
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != TCP_ESTABLISHED


def run(bindir, extra, readers_n, nonreaders_n, seconds, settle):
    """Returns (longest gap with no reader receiving, {reader: how it was lost},
    clients kicked). Runs for at most `seconds`, and `settle` seconds past the
    moment every non-reader was reset (the readers must go on receiving)."""
    srv = Server([os.path.join(bindir, "pc-chat"), "--listen", HOST + ":0", "--threads", "2",
                  "--kernel-filter", "off"] + BACKEND + extra)
    socks = []
    try:
        port = srv.wait_listening(10)
        readers = []
        for _ in range(readers_n):
            s = socket.create_connection((HOST, port), timeout=10)
            got = b""
            while len(got) < len(WELCOME):
                got += s.recv(len(WELCOME) - len(got))
            s.setblocking(False)
            readers.append(s)
            socks.append(s)
        nonreaders = []
        for _ in range(nonreaders_n):
            nr = socket.socket()
            nr.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            nr.connect((HOST, port))
            socks.append(nr)
            nonreaders.append(nr)
        sel = selectors.DefaultSelector()
        for i, s in enumerate(readers):
            sel.register(s, selectors.EVENT_READ | (selectors.EVENT_WRITE if i == 0 else 0), i)
        t0 = last = now()
        gap = 0.0
        lost = {}
        out = bytearray()
        sent = 0
        all_kicked = None
        while now() - t0 < seconds:
            if all_kicked is None and all(reset_by_server(nr) for nr in nonreaders):
                all_kicked = now()
                print("  every non-reader reset after %.1f s" % (all_kicked - t0))
            if all_kicked is not None and now() - all_kicked >= settle:
                break
            if not srv.alive():
                raise Fail("pc-chat exited: %s\n%s" % (srv.proc.poll(), srv.tail()))
            for key, ev in sel.select(0.05):
                i, s = key.data, key.fileobj
                if ev & selectors.EVENT_WRITE:
                    if len(out) < 65536:
                        out += b"".join(LINE % (sent + k) for k in range(500))
                        sent += 500
                    try:
                        del out[:s.send(out)]
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        lost[i] = errname(e)
                        sel.unregister(s)
                        continue
                if ev & selectors.EVENT_READ:
                    try:
                        d = s.recv(1 << 20)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        d = b""
                        lost[i] = errname(e)
                    if not d:
                        lost.setdefault(i, "eof")
                        sel.unregister(s)
                        continue
                    gap = max(gap, now() - last)
                    last = now()
        # the clients go first: readers that stopped reading would hold the
        # stop for its whole drain (5 s)
        for s in socks:
            s.close()
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(30)
        for r in srv.readers:
            r.join(5)
        m = re.search(r"(\d+) kicked", "\n".join(srv.lines))
        kicked = int(m.group(1)) if m else -1
        return gap, lost, kicked
    finally:
        srv.kill()
        for s in socks:
            s.close()


def main():
    bindir = sys.argv[1]
    if sys.argv[2:4] and sys.argv[2] == "--backend":
        BACKEND.extend(sys.argv[2:4])
    set_budget(120)
    failures = []
    for v in ("18446744073709551614", "-2"):
        try:
            p = subprocess.run([os.path.join(bindir, "pc-chat"), "--listen", HOST + ":0",
                                "--kernel-filter", "off", "--max-line", v],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=2)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            rc = "still running after 2 s"
        print("--max-line %s: exit %s" % (v, rc))
        if rc != 2:
            failures.append("--max-line %s: exit %s, expected 2 (refused)" % (v, rc))
    gap, lost, kicked = run(bindir, ["--max-buffered", "1048576", "--patience", "200"], 5, 8, 8, 2)
    print("memory cap: readers lost %s, %d kicked" % (lost or "none", kicked))
    if lost:
        failures.append("memory cap: readers kicked along with the non-readers: %s" % lost)
    if kicked != 8:
        failures.append("memory cap: %d clients kicked, expected the 8 non-readers" % kicked)
    gap, lost, kicked = run(bindir, ["--patience", "500"], 5, 12, 10, 2)
    print("patience: longest silence for the readers %.1f s, readers lost %s, %d kicked"
          % (gap, lost or "none", kicked))
    if gap > 3.0:
        failures.append("patience 500 ms: readers got nothing for %.1f s (12 non-readers)" % gap)
    if lost or kicked != 12:
        failures.append("patience: readers lost %s, %d kicked, expected the 12 non-readers"
                        % (lost or "none", kicked))
    for f in failures:
        print("FAIL:", f)
    if not failures:
        print("PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Fail as e:
        print("FAIL:", e)
        sys.exit(1)
