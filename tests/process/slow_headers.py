#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: pc-http under a slow-header (slowloris) attack.

    slow_headers.py BIN_DIR [--slow N] [--backend NAME] [--min-ratio R] ...

Starts BIN_DIR/pc-http with --header-timeout 2000 and measures:

  baseline  keep-alive clients (a separate process, so the attack's socket work
            does not share its interpreter) send "GET /" and read each full
            response for ~3 s: requests/s.
  attack    N (2000) slow-header clients, each bound to a source address among
            127.0.0.2 .. 127.0.0.254 (round-robin, loopback only) before it
            connects, send "GET / HTTP/1.1\\r\\n" and then one header byte every
            ~500 ms, never ending the head. They connect spread over the first
            second, so that (with a 2 s header timeout) the attack lasts the
            whole 3 s window during which the same keep-alive load runs again.
            For each slow client: time from its connect to the server cutting
            it off (EOF or reset seen by recv or send).
  after     the baseline load once more; the ratio's reference is the mean of
            the runs before and after the attack (evens out drift in what else
            the machine is doing).

Checks: >= 95% of the slow clients cut off within 6 s of their connect; load
during the attack >= 0.7x the baseline (goal 0.9x); no load errors; pc-http
alive and answering afterwards; /metrics counts the header-timeout closes
(pc_connections_closed_total{reason="header_timeout"} >= 95% of N); then
SIGTERM stops it with exit status 0 within 10 s.

Exit 0 on pass, 1 on failure (every failed check printed). Bounded: every
phase is time-limited and an overall alarm (default 38 s) ends the run; the
server is killed on every exit path. Python 3 standard library only; Linux
(the whole 127.0.0.0/8 must be local, as it is on Linux).
"""

import argparse
import collections
import errno
import heapq
import http.client
import json
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time

from proclib import Fail, Server, errname, now, set_budget, pdeathsig  # noqa: E402

HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
SLOW_LINE = b"GET / HTTP/1.1\r\n"
# Trickled one byte at a time; no CR/LF, so the head never completes (and at
# 2 bytes/s it stays far below the 8 KiB head limit).
SLOW_TRICKLE = b"X-Slow-Header: " + b"a" * 4096

# The /metrics label of PC_CLOSE_HEADER_TIMEOUT. samples/http/http_app.c
# metrics_format labels pc_connections_closed_total with the lowercased name of
# the PC_CLOSE_REASON_MAP entry (HEADER_TIMEOUT -> "header_timeout"), not with
# pc_close_reason_str's text ("first-request timeout").
HEADER_TIMEOUT_LABEL = "header_timeout"


def _content_length(head):
    m = re.search(rb"\r\ncontent-length:[ \t]*(\d+)", head, re.I)
    return int(m.group(1)) if m else 0


WARMUP = 0.3  # s of load before each measured window


def load_worker(port, start_at, seconds, nconns):
    """nconns keep-alive connections, one request in flight on each, from
    WARMUP s before start_at (time.monotonic(), shared by the processes of one
    machine); counts the responses completed in [start_at, start_at + seconds].
    Prints one JSON line."""
    res = {"requests": 0, "seconds": 0.0, "errors": 0, "non200": 0, "reconnects": 0,
           "error_kinds": {}}
    sel = selectors.DefaultSelector()
    t_end = start_at + seconds

    def err(kind):
        res["errors"] += 1
        res["error_kinds"][kind] = res["error_kinds"].get(kind, 0) + 1

    def open_conn():
        s = socket.create_connection((HOST, port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        c = {"sock": s, "buf": bytearray(), "out": b"", "pending": False}
        sel.register(s, selectors.EVENT_READ, c)
        return c

    def send_req(c):
        c["pending"] = True
        try:
            n = c["sock"].send(REQUEST)
        except BlockingIOError:
            n = 0
        if n < len(REQUEST):
            c["out"] = REQUEST[n:]
            sel.modify(c["sock"], selectors.EVENT_READ | selectors.EVENT_WRITE, c)

    def reopen(c, kind):
        err(kind)
        try:
            sel.unregister(c["sock"])
        except (KeyError, ValueError):
            pass
        c["sock"].close()
        if now() < t_end:
            res["reconnects"] += 1
            try:
                c2 = open_conn()
            except OSError:
                err("connect")
                return
            send_req(c2)

    conns = []
    for _ in range(nconns):
        try:
            conns.append(open_conn())
        except OSError:
            err("connect")
    while now() < start_at - WARMUP:
        time.sleep(min(0.01, max(0.0, start_at - WARMUP - now())))
    t0 = max(now(), start_at)
    for c in conns:
        send_req(c)
    while True:
        t = now()
        if t >= t_end:
            break
        for key, ev in sel.select(min(0.05, t_end - t)):
            c = key.data
            s = c["sock"]
            if ev & selectors.EVENT_WRITE and c["out"]:
                try:
                    n = s.send(c["out"])
                    c["out"] = c["out"][n:]
                except BlockingIOError:
                    pass
                except OSError as e:
                    reopen(c, "send:" + errno.errorcode.get(e.errno, str(e.errno)))
                    continue
                if not c["out"]:
                    sel.modify(s, selectors.EVENT_READ, c)
            if not ev & selectors.EVENT_READ:
                continue
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                reopen(c, "recv:" + errno.errorcode.get(e.errno, str(e.errno)))
                continue
            if not data:
                reopen(c, "eof")
                continue
            buf = c["buf"]
            buf += data
            while True:
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    break
                head = bytes(buf[:i + 2])
                total = i + 4 + _content_length(head)
                if len(buf) < total:
                    break
                del buf[:total]
                c["pending"] = False
                if t0 <= now() <= t_end:
                    res["requests"] += 1
                if not head.startswith(b"HTTP/1.1 200"):
                    res["non200"] += 1
                if re.search(rb"\r\nconnection:[ \t]*close", head, re.I):
                    reopen(c, "server-close")
                    break
                if now() < t_end:
                    send_req(c)
    res["seconds"] = max(1e-9, min(now(), t_end) - t0)
    # Read the answers still in flight (bounded) so that closing sends a FIN,
    # not a reset for unread data.
    t_drain = now() + 1.0
    while any(k.data["pending"] for k in sel.get_map().values()) and now() < t_drain:
        for key, ev in sel.select(0.05):
            c = key.data
            try:
                data = c["sock"].recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                c["pending"] = False
                continue
            c["buf"] += data
            i = c["buf"].find(b"\r\n\r\n")
            if i >= 0 and len(c["buf"]) >= i + 4 + _content_length(bytes(c["buf"][:i + 2])):
                c["pending"] = False
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    print(json.dumps(res), flush=True)


def start_load(script, port, seconds, nconns, lead=0.8):
    """Start a load worker process; returns (Popen, start_at)."""
    start_at = now() + lead
    p = subprocess.Popen(
        [sys.executable, script, "--load-worker", str(port), repr(start_at), repr(seconds),
         str(nconns)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=pdeathsig if sys.platform.startswith("linux") else None)
    return p, start_at


def finish_load(p, timeout):
    try:
        out, errout = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise Fail("load worker did not finish within %.0f s" % timeout)
    try:
        return json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise Fail("load worker failed (exit %s): %s" % (p.returncode, errout.decode()[-2000:]))


# --------------------------------------------------------------------------- #
# slow-header clients


class Slow:
    __slots__ = ("i", "src", "sock", "t_conn", "t_cut", "how", "sent", "got_data", "state")

    def __init__(self, i, src):
        self.i, self.src = i, src
        self.sock = None
        self.t_conn = self.t_cut = None
        self.how = None
        self.sent = 0
        self.got_data = 0
        self.state = "new"  # new, connecting, open, done


def slow_attack(port, n, start_at, ramp, interval, giveup, deadline):
    """Runs the slow clients until each is cut off, failed or given up on
    (giveup s after its connect), or the deadline. Returns the Slow list."""
    sel = selectors.DefaultSelector()
    clients = [Slow(i, "127.0.0.%d" % (2 + i % 253)) for i in range(n)]
    timers = []  # (when, seq, kind, client)
    seq = 0

    def at(when, kind, c):
        nonlocal seq
        seq += 1
        heapq.heappush(timers, (when, seq, kind, c))

    remaining = n

    def finish(c, how, t_cut=None):
        nonlocal remaining
        if c.state == "done":
            return
        remaining -= 1
        c.state = "done"
        c.how = how
        c.t_cut = t_cut
        if c.sock is not None:
            try:
                sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.sock.close()

    def connected(c, t):
        c.state = "open"
        c.t_conn = t
        try:
            c.sock.send(SLOW_LINE)  # 16 bytes into an empty buffer: complete
        except OSError as e:
            finish(c, "send:" + errname(e), t)
            return
        sel.modify(c.sock, selectors.EVENT_READ, c)
        # spread the trickle over the interval
        at(t + interval * (0.5 + (c.i % 97) / 97.0), "send", c)
        at(t + giveup, "giveup", c)

    def start(c):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.sock = s
        s.setblocking(False)
        try:
            s.bind((c.src, 0))
        except OSError as e:
            finish(c, "bind:" + errname(e))
            return
        rc = s.connect_ex((HOST, port))
        if rc == 0:
            sel.register(s, selectors.EVENT_READ, c)
            connected(c, now())
        elif rc in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
            c.state = "connecting"
            sel.register(s, selectors.EVENT_WRITE, c)
            at(now() + giveup, "giveup-connect", c)
        else:
            finish(c, "connect:" + errno.errorcode.get(rc, str(rc)))

    for c in clients:
        at(start_at + ramp * c.i / n, "connect", c)
    while remaining:
        t = now()
        if t >= deadline:
            break
        while timers and timers[0][0] <= t:
            _, _, kind, c = heapq.heappop(timers)
            if c.state == "done":
                continue
            if kind == "connect":
                start(c)
            elif kind == "giveup" and c.state == "open":
                finish(c, "not cut (gave up)")
            elif kind == "giveup-connect" and c.state == "connecting":
                finish(c, "connect timeout")
            elif kind == "send" and c.state == "open":
                try:
                    k = c.sent % len(SLOW_TRICKLE)
                    c.sock.send(SLOW_TRICKLE[k:k + 1])
                    c.sent += 1
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    finish(c, "send:" + errname(e), now())
                    continue
                at(now() + interval, "send", c)
        timeout = 0.05
        if timers:
            timeout = max(0.0, min(timeout, timers[0][0] - now()))
        for key, ev in sel.select(timeout):
            c = key.data
            if c.state == "connecting":
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(c, "connect:" + errno.errorcode.get(err, str(err)))
                else:
                    connected(c, now())
                continue
            if c.state != "open":
                continue
            try:
                data = c.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:  # ECONNRESET: the server cut it off with a reset
                finish(c, "reset" if e.errno == errno.ECONNRESET else "recv:" + errname(e), now())
                continue
            if data:
                c.got_data += len(data)  # e.g. a 408; the close follows
            else:
                finish(c, "eof", now())
    for c in clients:
        if c.state != "done":
            finish(c, "not cut (deadline)" if c.state == "open" else "not connected (deadline)")
    sel.close()
    return clients


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


# --------------------------------------------------------------------------- #
# metrics


def http_get(port, path, timeout=5.0):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": "x"})
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def closed_by_reason(metrics_text):
    out = {}
    for m in re.finditer(r'^pc_connections_closed_total\{reason="([^"]*)"\}\s+(\d+)\s*$',
                         metrics_text, re.M):
        out[m.group(1)] = int(m.group(2))
    return out


# --------------------------------------------------------------------------- #


def check_defaults(exe):
    """pc-http bounds silent and trickling clients by default (a request head
    60 s, a connection that sends nothing 75 s), and 0 turns both off: what the
    start-up lines say it configured. Returns the failures."""
    failures = []
    cases = (([], True), (["--header-timeout", "0", "--idle-timeout", "0"], False))
    for extra, expect in cases:
        srv = Server([exe, "--listen", HOST + ":0", "--threads", "1"] + extra)
        try:
            srv.wait_listening(15.0)
            end = now() + 3.0
            want = ("request head timeout: 60000 ms", "timeouts: idle 75000 ms, write 0 ms")
            while now() < end:
                text = "\n".join(srv.lines)
                if all(w in text for w in want):
                    break
                time.sleep(0.05)
            time.sleep(0.2)  # a line printed when it should not be has arrived too
            text = "\n".join(srv.lines)
            for w in want:
                if (w in text) != expect:
                    failures.append("pc-http %s: start-up lines %s '%s':\n%s"
                                    % (" ".join(extra) or "(no timeout flags)",
                                       "lack" if expect else "have", w, srv.tail()))
            print("defaults %s: %s" % (" ".join(extra) or "(none given)",
                                       "timeouts on" if expect else "timeouts off"), flush=True)
        finally:
            srv.kill()
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bin_dir", help="directory holding pc-http (<build>/bin)")
    ap.add_argument("--slow", type=int, default=2000, help="slow-header clients (2000)")
    ap.add_argument("--load-conns", type=int, default=20, help="keep-alive load connections")
    ap.add_argument("--load-seconds", type=float, default=3.0)
    ap.add_argument("--header-timeout", type=int, default=2000, help="ms, passed to pc-http")
    ap.add_argument("--cutoff", type=float, default=6.0,
                    help="a slow client must be cut off within this many s of its connect")
    ap.add_argument("--min-ratio", type=float, default=0.7,
                    help="attack/baseline throughput must reach this (goal 0.9)")
    ap.add_argument("--ramp", type=float, default=1.0, help="s over which slow clients connect")
    ap.add_argument("--interval", type=float, default=0.5, help="s between trickled bytes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", help="pc-http --backend (default: its own choice)")
    ap.add_argument("--budget", type=int, default=38, help="overall time limit, s")
    args = ap.parse_args()

    exe = os.path.join(args.bin_dir, "pc-http")
    if not os.access(exe, os.X_OK):
        print("FAIL: no executable %s" % exe)
        return 1

    # 2000 sockets in this process: raise the soft open-file limit to the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < args.slow + 200:
        print("FAIL: open-file limit %d is too low for %d slow clients" % (soft, args.slow))
        return 1

    set_budget(args.budget)
    failures = check_defaults(exe)

    argv = [exe, "--listen", HOST + ":0", "--threads", str(args.threads),
            "--header-timeout", str(args.header_timeout), "--max-conns", "6000"]
    if args.backend:
        argv += ["--backend", args.backend]
    script = os.path.abspath(__file__)
    srv = None
    workers = []
    t_run = now()
    try:
        print("server: %s" % " ".join(argv), flush=True)
        srv = Server(argv)
        port = srv.wait_listening(15.0)
        print("pc-http listening on %s:%d" % (HOST, port), flush=True)

        def show(name, r):
            print("%s: %d requests in %.2f s = %.0f req/s (errors %d, non-200 %d)"
                  % (name, r["requests"], r["seconds"], r["requests"] / r["seconds"],
                     r["errors"], r["non200"]), flush=True)
            return r["requests"] / r["seconds"]

        def plain_load(name):
            p, _ = start_load(script, port, args.load_seconds, args.load_conns)
            workers.append(p)
            r = finish_load(p, args.load_seconds + 15)
            return r, show(name, r)

        # (a) baseline
        base, base_rps = plain_load("baseline")
        if base["requests"] == 0:
            raise Fail("baseline load completed no request:\n" + srv.tail())

        # (b) attack: the load process starts at the same instant as the slow ramp
        p, start_at = start_load(script, port, args.load_seconds, args.load_conns)
        workers.append(p)
        giveup = args.cutoff + 2.0
        clients = slow_attack(port, args.slow, start_at, args.ramp, args.interval, giveup,
                              deadline=start_at + args.ramp + giveup + 1.0)
        att = finish_load(p, args.load_seconds + 15)
        att_rps = att["requests"] / att["seconds"]

        hows = collections.Counter(c.how.split(":")[0] if c.how.startswith(("bind", "connect"))
                                   else c.how for c in clients)
        cut = sorted(c.t_cut - c.t_conn for c in clients
                     if c.t_cut is not None and c.t_conn is not None)
        within = sum(1 for d in cut if d <= args.cutoff)
        answered = sum(1 for c in clients if c.got_data)
        print("attack: %d slow clients from 127.0.0.2-254; endings: %s"
              % (args.slow, ", ".join("%s %d" % kv for kv in sorted(hows.items()))))
        if cut:
            print("  cut-off after connect: p50 %.2f s, p95 %.2f s, max %.2f s (min %.2f s); "
                  "%d of %d (%.1f%%) within %.1f s; %d got bytes before the close"
                  % (pct(cut, 50), pct(cut, 95), cut[-1], cut[0], within, args.slow,
                     100.0 * within / args.slow, args.cutoff, answered))
        else:
            print("  no slow client was cut off")
        bad_bind = [c.how for c in clients if c.how.startswith("bind")]
        if bad_bind:
            failures.append("%d slow clients could not bind their loopback source address "
                            "(%s): is 127.0.0.0/8 local here?" % (len(bad_bind), bad_bind[0]))
        show("load during attack", att)
        if not srv.alive():
            raise Fail("pc-http died (exit %s):\n%s" % (srv.proc.returncode, srv.tail()))

        # (c) the same load once more: the server recovered, and the reference for
        # the ratio is the mean of the runs before and after the attack, which
        # evens out drift in what else the machine is doing
        after, after_rps = plain_load("baseline after attack")
        ref_rps = (base_rps + after_rps) / 2.0
        ratio = att_rps / ref_rps if ref_rps > 0 else 0.0
        print("throughput: baseline %.0f req/s (before %.0f, after %.0f), attack %.0f req/s, "
              "ratio %.2f (required >= %.2f, goal >= 0.90)"
              % (ref_rps, base_rps, after_rps, att_rps, ratio, args.min_ratio), flush=True)

        if within < 0.95 * args.slow:
            failures.append("only %d of %d slow clients (%.1f%%) were cut off within %.1f s of "
                            "their connect (need >= 95%%)"
                            % (within, args.slow, 100.0 * within / args.slow, args.cutoff))
        if ratio < args.min_ratio:
            failures.append("throughput under attack %.0f req/s is %.2fx the baseline %.0f req/s "
                            "(need >= %.2fx)" % (att_rps, ratio, ref_rps, args.min_ratio))
        for name, r in (("baseline", base), ("attack", att), ("after-attack", after)):
            if r["errors"] or r["non200"]:
                failures.append("%s load: %d connection errors %s, %d non-200 responses"
                                % (name, r["errors"], r["error_kinds"], r["non200"]))

        # afterwards: alive, answers, and counted the header-timeout closes
        if not srv.alive():
            raise Fail("pc-http died (exit %s):\n%s" % (srv.proc.returncode, srv.tail()))
        try:
            st, body = http_get(port, "/")
        except (OSError, http.client.HTTPException) as e:
            raise Fail("pc-http does not answer GET / after the attack: %s" % e)
        if st != 200:
            failures.append("GET / after the attack answered %d" % st)
        need = 0.95 * args.slow
        closed = {}
        t_stop = now() + 3.0
        while True:  # closes are counted as they complete: let the counters settle
            st, text = http_get(port, "/metrics")
            closed = closed_by_reason(text) if st == 200 else {}
            if closed.get(HEADER_TIMEOUT_LABEL, 0) >= need or now() >= t_stop:
                break
            time.sleep(0.2)
        print("metrics: pc_connections_closed_total %s"
              % ", ".join("%s=%d" % kv for kv in sorted(closed.items()) if kv[1]), flush=True)
        if HEADER_TIMEOUT_LABEL not in closed:
            failures.append("/metrics has no pc_connections_closed_total{reason=\"%s\"} "
                            "(labels: %s)" % (HEADER_TIMEOUT_LABEL, sorted(closed)))
        elif closed[HEADER_TIMEOUT_LABEL] < need:
            failures.append("/metrics counts %d header-timeout closes, need >= %d (95%% of %d)"
                            % (closed[HEADER_TIMEOUT_LABEL], int(need + 0.999), args.slow))
        if not srv.alive():
            failures.append("pc-http died after the attack (exit %s)" % srv.proc.returncode)
        else:  # a graceful stop (under ASan this also runs the leak check)
            t_sig = now()
            srv.proc.send_signal(signal.SIGTERM)
            try:
                rc = srv.proc.wait(10)
                print("pc-http stopped on SIGTERM: exit %d after %.2f s" % (rc, now() - t_sig))
                if rc != 0:
                    failures.append("pc-http exited with status %d after SIGTERM (want 0)" % rc)
            except subprocess.TimeoutExpired:
                failures.append("pc-http still running 10 s after SIGTERM")
    except Fail as e:
        failures.append(str(e))
    finally:
        signal.alarm(0)
        for p in workers:
            if p.poll() is None:
                p.kill()
                p.wait()
        if srv is not None:
            srv.kill()
    print("total time %.1f s" % (now() - t_run))
    if failures:
        for f in failures:
            print("FAIL: " + f)
        if srv is not None:
            print("--- pc-http output (last lines) ---\n" + srv.tail())
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--load-worker":
        load_worker(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
        sys.exit(0)
    sys.exit(main())
