#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: pc-http with TLS, the PROXY protocol, rules and
per-source limits all on, against a mix of hostile clients; afterwards it
holds nothing and still serves.

    hostile_mix.py BIN_DIR [--backend NAME] [--seconds S] [--threads N]

Starts BIN_DIR/pc-http with --tls-cert/--tls-key (tests/data/tls),
--proxy-protocol (trusted: 127.0.0.10 and 127.0.0.11), --rules (deny
127.0.0.19, deny the real clients 10.66.0.0/16 and 2001:db8:66::/48),
--per-source-max 8, --per-source-rate 100/200, header, idle, write and PROXY
timeouts, and the kernel filter off (a rejection is then a reset after the
handshake, as without privilege).

1. One of each, in turn, with what it must do: a good HTTPS request (direct,
   behind PROXY v1 and v2, with the header and the ClientHello in one
   segment, and written a few bytes at a time) is answered; a denied source
   and a denied real client (IPv4 behind v1, IPv6 behind v2) are reset
   before any TLS byte comes back; a truncated, an oversized and a lying v2
   header end the connection; garbage in place of a ClientHello gets an
   alert; a request head too large is a 431; a ninth connection from one
   source is reset while eight are open; 30 pipelined requests, then a FIN
   (or a close_notify and a FIN), are all answered before the end.
2. For --seconds (default 6), --threads (default 12) threads each run a
   seeded mix from sources 127.0.0.2 to 127.0.0.20: good and pipelined
   requests, malformed requests, large bodies, slowloris heads, half-closes,
   connect-and-reset storms, hostile PROXY headers (truncated, oversized,
   lying about lengths, bad versions, garbage TLVs, split in tiny writes),
   hostile TLS (truncated or garbage ClientHellos, cuts at random points of
   the handshake, a record that does not decrypt, plain HTTP on the TLS
   port), clients that pipeline /metrics and never read, and idle clients;
   resets (SO_LINGER 0) and FINs alternate. A good or half-closed request
   that completed its handshake must be answered (every verdict comes
   before it). Beside the mix, one slowloris client (a header byte every
   0.3 s) must be cut by the 4 s header timeout within 6 s.
3. Then, within 6 s of the last client: pc_connections_active is 1 (the
   /metrics connection itself), the fd count of the process is back to
   what it was before step 1's rejections, and / still answers 200;
   /metrics counted rejections by rule and by per-source maximum, PROXY
   rejections, TLS handshake errors, header timeouts and PROXY closes.
4. SIGTERM: exit status 0 within 10 s, with no sanitizer report in the
   output (in an ASan/UBSan build, LeakSanitizer runs at that exit).

Exit 0 on pass, 1 on failure (every failed check printed), 77 (skipped)
when pc-http has no TLS. An overall alarm bounds the run; the server is
killed on every exit path. Linux, Python 3 standard library only.
"""

import argparse
import os
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

from proclib import Checks, Server, Skip, now, run_checks  # noqa: E402
from proclib import connect_from as connect, metric_value  # noqa: E402

HOST = "127.0.0.1"
DATA = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                                    "tls"))
TRUSTED = ("127.0.0.10", "127.0.0.11")
DENIED = "127.0.0.19"
SOURCES = ["127.0.0.%d" % i for i in range(2, 21)]
HEADER_TIMEOUT_MS = 4000  # long enough for a handshake on a loaded sanitizer build
GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


class Cut(Exception):
    """The server ended a connection where the client expected more."""


# ---- building blocks ------------------------------------------------------


def reset(s):
    """Close s with a reset (SO_LINGER 0)."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def end(s, rnd):
    """Close s with a reset or a FIN, at random."""
    if rnd.random() < 0.5:
        reset(s)
    else:
        s.close()


def proxy_v1(real, sport=4000):
    fam = "TCP6" if ":" in real else "TCP4"
    dst = "::1" if ":" in real else HOST
    return ("PROXY %s %s %s %d 443\r\n" % (fam, real, dst, sport)).encode()


def proxy_v2(real, sport=4000, tlv=b"", length=None, ver_cmd=0x21):
    if ":" in real:
        fam = 0x21
        body = socket.inet_pton(socket.AF_INET6, real) + socket.inet_pton(socket.AF_INET6, "::1")
    else:
        fam = 0x11
        body = socket.inet_aton(real) + socket.inet_aton(HOST)
    body += struct.pack("!HH", sport, 443) + tlv
    n = len(body) if length is None else length
    return V2_SIG + bytes([ver_cmd, fam]) + struct.pack("!H", n) + body


def real_client(rnd):
    """A real client's address for a PROXY header; about 1 in 6 denied."""
    r = rnd.random()
    if r < 0.1:
        return "10.66.%d.%d" % (rnd.randrange(256), rnd.randrange(1, 255))
    if r < 0.17:
        return "2001:db8:66::%x" % rnd.randrange(1, 65535)
    if r < 0.35:
        return "2001:db8:%x::%x" % (rnd.randrange(1, 50), rnd.randrange(1, 65535))
    return "10.%d.%d.%d" % (rnd.randrange(1, 60), rnd.randrange(256), rnd.randrange(1, 255))


def trickle(s, data, rnd, most=3):
    """data in writes of 1..most bytes (TCP_NODELAY: separate segments)."""
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    i = 0
    while i < len(data):
        n = rnd.randint(1, most)
        s.sendall(data[i:i + n])
        i += n


class Tls:
    """A TLS client over a plain socket, driven by hand (memory BIOs), so that
    its bytes can be cut, split and mixed with a PROXY header."""

    def __init__(self, s, rnd):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(os.path.join(DATA, "ca.pem"))
        if rnd.random() < 0.3:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        self.s, self.inc, self.out = s, ssl.MemoryBIO(), ssl.MemoryBIO()
        self.o = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")

    def hello(self):
        """The ClientHello's bytes (not sent)."""
        try:
            self.o.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.out.read()

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise Cut("EOF")
        self.inc.write(d)

    def handshake(self, rounds=None):
        """Finish the handshake (the ClientHello may have gone already);
        with rounds, give up after that many reads. True when complete."""
        while True:
            try:
                self.o.do_handshake()
                self.s.sendall(self.out.read())
                return True
            except ssl.SSLWantReadError:
                self.s.sendall(self.out.read())
                if rounds is not None:
                    if rounds == 0:
                        return False
                    rounds -= 1
                self._fill()

    def send(self, data):
        self.o.write(data)
        self.s.sendall(self.out.read())

    def recv(self):
        """Plaintext, or b"" at close_notify or EOF."""
        while True:
            try:
                return self.o.read(65536)
            except ssl.SSLWantReadError:
                try:
                    self._fill()
                except Cut:
                    return b""
            except ssl.SSLZeroReturnError:
                return b""

    def close_notify(self):
        try:
            self.o.unwrap()
        except ssl.SSLError:
            pass
        self.s.sendall(self.out.read())


def session(port, src, rnd, tiny=False, together=None):
    """An open TLS session from src: the PROXY header first from a trusted
    source (in tiny writes, or in one segment with the ClientHello)."""
    s = connect(port, src)
    t = Tls(s, rnd)
    if src in TRUSTED:
        real = real_client(rnd)
        h = proxy_v1(real) if rnd.random() < 0.5 else proxy_v2(real)
        if together is None:
            together = rnd.random() < 0.4
        if together:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(h + t.hello())
        elif tiny:
            trickle(s, h, rnd, 2)
        else:
            s.sendall(h)
    if tiny and not (src in TRUSTED and together):
        trickle(s, t.hello(), rnd, 7)
    t.handshake()
    return t


def responses(t, n):
    """Read up to n responses (Content-Length framing): their status codes."""
    buf, codes = b"", []
    while len(codes) < n:
        while b"\r\n\r\n" not in buf:
            d = t.recv()
            if not d:
                return codes
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        m = re.search(rb"(?i)content-length:\s*(\d+)", head)
        ln = int(m.group(1)) if m else 0
        while len(rest) < ln:
            d = t.recv()
            if not d:
                return codes
            rest += d
        codes.append(int(head.split(b" ", 2)[1]))
        buf = rest[ln:]
    return codes


def rejected(port, src, head=b""):
    """True if a connection from src (with head sent first) is reset or ended
    without a single byte back."""
    s = connect(port, src)
    try:
        s.sendall(head + Tls(s, random.Random(0)).hello())
        return s.recv(4096) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        s.close()


# ---- the mix ---------------------------------------------------------------


def answered(t, k, what):
    """Read k responses: Cut unless all are 200 (a reset after the handshake
    is a failure too: the verdicts all come before it)."""
    try:
        codes = responses(t, k)
    except (OSError, ssl.SSLError) as e:
        raise Cut("%s: %d requests: %r after the handshake" % (what, k, e))
    if codes != [200] * k:
        raise Cut("%s: %d requests, answers %s" % (what, k, codes))


def m_good(port, rnd, src):
    t = session(port, src, rnd, tiny=rnd.random() < 0.2)
    k = rnd.randint(1, 4)
    t.send(GET * k)
    answered(t, k, "good")
    end(t.s, rnd)


def m_pipeline_close(port, rnd, src):
    t = session(port, src, rnd)
    k = rnd.randint(2, 40)
    t.send(GET * k)
    if rnd.random() < 0.5:
        t.close_notify()
    t.s.shutdown(socket.SHUT_WR)
    answered(t, k, "half-close")
    t.s.close()


BAD_REQUESTS = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 2000 + b"\r\n",
    b"\x00\x01\x02\xff\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: t\r\n\tfolded\r\n\r\n",
]


def m_malformed(port, rnd, src):
    t = session(port, src, rnd)
    m = rnd.choice(BAD_REQUESTS)
    if rnd.random() < 0.3:
        m = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 300)))
    t.send(GET * rnd.randint(0, 2) + m)
    responses(t, 3)
    end(t.s, rnd)


def m_body(port, rnd, src):
    t = session(port, src, rnd)
    n = rnd.randint(1000, 2 << 20)
    t.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % n)
    sent = 0
    while sent < n and rnd.random() > 0.03:
        t.send(b"b" * min(65536, n - sent))
        sent += 65536
    if sent >= n:
        responses(t, 1)
    reset(t.s)


def m_slowloris(port, rnd, src):
    t = session(port, src, rnd)
    head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100
    stop = now() + rnd.uniform(0.5, 3)  # slowloris() below outlasts the timeout
    for ch in head:
        if now() > stop:
            break
        t.send(bytes([ch]))
        time.sleep(0.05)
    end(t.s, rnd)


def m_reset_storm(port, rnd, src):
    for _ in range(rnd.randint(5, 20)):
        try:
            s = connect(port, src, 2)
        except OSError:
            continue
        try:
            if rnd.random() < 0.4:
                s.sendall(proxy_v2("10.0.0.1")[:rnd.randint(1, 20)] if src in TRUSTED else b"\x16")
        except OSError:
            pass
        reset(s)


def bad_proxy_header(rnd):
    k = rnd.randrange(9)
    real = real_client(rnd)
    if k == 0:
        return proxy_v1(real)[:rnd.randint(1, 20)]  # truncated
    if k == 1:
        return b"PROXY TCP4 " + b"1" * rnd.randint(100, 400)  # no CRLF within the limit
    if k == 2:
        return proxy_v2(real, length=rnd.randint(40, 2000))  # longer than sent
    if k == 3:
        return proxy_v2(real, length=rnd.randint(0, 11))  # shorter than the family
    if k == 4:
        return proxy_v2(real, length=65535) + os.urandom(rnd.randint(0, 3000))
    if k == 5:
        return proxy_v2(real, tlv=os.urandom(rnd.randint(1, 200)))
    if k == 6:
        return proxy_v2(real, ver_cmd=rnd.choice((0x10, 0x2F, 0x22, 0x31)))
    if k == 7:
        return rnd.choice([b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n", b"PROXY TCP6 ::1 ::1 99999 1\r\n",
                           b"PROXY  TCP4 1.1.1.1 1.1.1.1 1 1\r\n", b"PROXY UNKNOWN\r\n"])
    return V2_SIG[:rnd.randint(1, len(V2_SIG))]


def m_proxy(port, rnd, src):
    s = connect(port, src)
    h = bad_proxy_header(rnd)
    if rnd.random() < 0.5:
        trickle(s, h, rnd, 2)
    else:
        s.sendall(h)
    if rnd.random() < 0.4:  # go on with a handshake and a request
        t = Tls(s, rnd)
        s.sendall(t.hello())
        t.handshake()
        t.send(GET)
        t.recv()
    elif rnd.random() < 0.5:
        s.recv(4096)  # until the server judges it (or the proxy timeout)
    end(s, rnd)


def m_tls(port, rnd, src):
    s = connect(port, src)
    if src in TRUSTED:
        s.sendall(proxy_v2(real_client(rnd)))
    t = Tls(s, rnd)
    k = rnd.randrange(5)
    if k == 0:  # a truncated ClientHello, then maybe a pause
        ch = t.hello()
        s.sendall(ch[:rnd.randint(1, len(ch) - 1)])
        time.sleep(rnd.uniform(0, 1))
    elif k == 1:  # garbage records
        s.sendall(rnd.choice([os.urandom(rnd.randint(1, 2000)),
                              b"\x16\x03\x01\xff\xff" + os.urandom(50),
                              b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
                              b"\x15\x03\x03\x00\x02\x02\x28"]))
        s.recv(4096)
    elif k == 2:  # cut at a random point of the handshake
        trickle(s, t.hello(), rnd, 9)
        t.handshake(rounds=rnd.randint(0, 2))
    elif k == 3:  # a complete handshake, then a record that does not decrypt
        s.sendall(t.hello())
        t.handshake()
        s.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))
        s.recv(4096)
    else:  # plain HTTP on the TLS port
        s.sendall(GET)
        s.recv(4096)
    end(s, rnd)


def m_nonreader(port, rnd, src):
    t = session(port, src, rnd)
    t.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for _ in range(rnd.randint(1, 10)):
        t.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n" * 100)
    time.sleep(rnd.uniform(0.2, 2))
    end(t.s, rnd)


def m_idle(port, rnd, src):
    t = session(port, src, rnd)
    time.sleep(rnd.uniform(0.2, 2.5))
    t.s.close()


MIX = [(m_good, 6), (m_pipeline_close, 2), (m_malformed, 3), (m_body, 1), (m_slowloris, 2),
       (m_reset_storm, 2), (m_proxy, 4), (m_tls, 4), (m_nonreader, 1), (m_idle, 1)]


def mix_thread(port, seed, until, out, lock):
    rnd = random.Random(seed)
    pick = [f for f, w in MIX for _ in range(w)]
    while now() < until:
        f, src = rnd.choice(pick), rnd.choice(SOURCES)
        try:
            f(port, rnd, src)
            what = "done"
        except Cut as e:
            # before the handshake completed, a cut is a rejection; after
            # it, a good or half-closed request must have been answered
            what = "cut"
            if str(e) != "EOF":
                with lock:
                    out["failures"].append("%s from %s: %s" % (f.__name__, src, e))
        except (OSError, ssl.SSLError):
            what = "error"  # a reset, a refusal, a timeout: hostile clients get those
        with lock:
            key = "%s %s" % (f.__name__, what)
            out[key] = out.get(key, 0) + 1


def slowloris(port, result):
    """One header byte every 0.3 s from 127.0.0.30 (not in the mix): the
    time until the server ended it (EOF or reset), in result[0] (None: not
    in 8 s)."""
    t = session(port, "127.0.0.30", random.Random(3))
    t0 = now()
    result.append(None)
    t.s.settimeout(0.3)
    for ch in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100:
        if now() - t0 > 8:
            break
        try:
            t.send(bytes([ch]))
            if t.s.recv(4096) == b"":  # anything else (an alert) waits for the EOF
                result[0] = now() - t0
                break
        except socket.timeout:
            continue
        except OSError:
            result[0] = now() - t0
            break
    t.s.close()


# ---- the server's side ------------------------------------------------------


def metrics(port):
    t = session(port, HOST, random.Random(0))
    t.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    body = b""
    while True:
        d = t.recv()
        if not d:
            break
        body += d
    t.s.close()
    return body.decode("utf-8", "replace")


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def run(a):
    check = Checks()
    helptext = subprocess.run([os.path.join(a.bin_dir, "pc-http"), "--help"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout
    if b"--tls-cert" not in helptext:
        raise Skip("pc-http has no --tls-cert")
    d = tempfile.mkdtemp(prefix="pc-hostile-")
    trusted, rules = os.path.join(d, "trusted"), os.path.join(d, "rules")
    with open(trusted, "w") as f:
        f.write("".join("allow %s\n" % t for t in TRUSTED))
    with open(rules, "w") as f:
        f.write("deny %s\ndeny 10.66.0.0/16\ndeny 2001:db8:66::/48\n" % DENIED)
    srv = Server([os.path.join(a.bin_dir, "pc-http"), "--listen", "127.0.0.1:0", "--backend",
                  a.backend, "--threads", "2", "--tls-cert", os.path.join(DATA, "server.pem"),
                  "--tls-key", os.path.join(DATA, "server.key"), "--proxy-protocol", trusted,
                  "--proxy-timeout", "1000", "--rules", rules, "--per-source-max", "8",
                  "--per-source-rate", "100/200", "--header-timeout", str(HEADER_TIMEOUT_MS),
                  "--idle-timeout", "3000", "--write-timeout", "1500", "--kernel-filter", "off"])
    try:
        port = srv.wait_listening(20)
        pid = srv.proc.pid
        rnd = random.Random(7)

        # 1. one of each
        for src, tiny, together in ((HOST, False, None), (HOST, True, None),
                                    (TRUSTED[0], False, False), (TRUSTED[0], False, True),
                                    (TRUSTED[1], True, False)):
            t = session(port, src, rnd, tiny=tiny, together=together)
            t.send(GET)
            check(responses(t, 1) == [200],
                  "good request from %s (tiny writes %s, header with the hello %s)"
                  % (src, tiny, together))
            t.s.close()
        fd0 = fds(pid)
        check(rejected(port, DENIED), "denied source: reset, no TLS byte back")
        check(rejected(port, TRUSTED[0], proxy_v1("10.66.1.2")),
              "denied real client behind PROXY v1: reset")
        check(rejected(port, TRUSTED[1], proxy_v2("2001:db8:66::5")),
              "denied real client (IPv6) behind PROXY v2: reset")
        for name, h in (("truncated v2", proxy_v2("10.1.1.1")[:20]),
                        ("oversized v1", b"PROXY TCP4 " + b"1" * 200),
                        ("v2 longer than sent", proxy_v2("10.1.1.1", length=300))):
            s = connect(port, TRUSTED[0])
            s.sendall(h)
            try:
                ended = s.recv(1) == b""
            except ConnectionResetError:
                ended = True
            except socket.timeout:
                ended = False
            s.close()
            check(ended, "%s header: the connection is ended" % name)
        s = connect(port, HOST)
        s.sendall(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")
        alert = s.recv(5)
        s.close()
        check(alert[:1] == b"\x15", "garbage ClientHello: an alert (%r)" % alert)
        t = session(port, HOST, rnd)
        t.send(b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 2000 + b"\r\n")
        check(responses(t, 1) == [431], "request head too large: 431")
        t.s.close()
        held = [session(port, "127.0.0.31", rnd) for _ in range(8)]
        check(rejected(port, "127.0.0.31"), "a ninth connection from one source: reset")
        for t in held:
            t.s.close()
        for notify in (False, True):
            t = session(port, HOST, rnd)
            t.send(GET * 30)
            if notify:
                t.close_notify()
            t.s.shutdown(socket.SHUT_WR)
            check(responses(t, 31) == [200] * 30,
                  "30 pipelined requests, then %s: all answered, then the end"
                  % ("close_notify and FIN" if notify else "FIN"))
            t.s.close()

        # 2. the mix, and one slowloris client beside it
        slow = []
        slow_t = threading.Thread(target=slowloris, args=(port, slow), daemon=True)
        slow_t.start()
        out, lock = {"failures": []}, threading.Lock()
        until = now() + a.seconds
        ts = [threading.Thread(target=mix_thread, args=(port, 1000 + i, until, out, lock),
                               daemon=True) for i in range(a.threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(a.seconds + 15)
        slow_t.join(10)
        check(not any(t.is_alive() for t in ts + [slow_t]), "the mix's clients finished")
        check(slow and slow[0] is not None and slow[0] < HEADER_TIMEOUT_MS / 1000 + 2,
              "slowloris cut by the header timeout (after %s s)"
              % ("%.1f" % slow[0] if slow and slow[0] is not None else "-"))
        fails = out.pop("failures")
        print("mix: %s" % ", ".join("%s %d" % kv for kv in sorted(out.items())))
        for f in fails[:10]:
            print("   " + f)
        check(not fails, "every good or half-closed request that passed its handshake was "
              "answered (%d not)" % len(fails))
        check(srv.alive(), "pc-http survived the mix")

        # 3. nothing held, still serving
        deadline = now() + 6
        while True:
            m = metrics(port)
            active, n = metric_value(m, "pc_connections_active"), fds(pid)
            if (active == 1 and n <= fd0) or now() > deadline:
                break
            time.sleep(0.25)
        check(active == 1, "pc_connections_active back to 1 (was %s)" % active)
        check(n <= fd0, "fds back to %d (are %d)" % (fd0, n))
        t = session(port, HOST, rnd)
        t.send(GET)
        check(responses(t, 1) == [200], "/ still answered")
        t.s.close()
        for name in ('pc_connections_rejected_total{step="rules"}',
                     'pc_connections_rejected_total{step="source_max"}',
                     "pc_proxy_rejected_total", "pc_tls_handshake_errors_total",
                     'pc_connections_closed_total{reason="header_timeout"}',
                     'pc_connections_closed_total{reason="proxy"}'):
            v = metric_value(m, name)
            check(v is not None and v > 0, "%s counted (%s)" % (name, v))

        # 4. SIGTERM
        t0 = now()
        srv.proc.send_signal(signal.SIGTERM)
        try:
            rc = srv.proc.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        for r in srv.readers:
            r.join(5)
        print("exit %s after %.1f s" % (rc, now() - t0))
        check(rc == 0, "SIGTERM: exit status 0 (%s)" % rc)
        text = "\n".join(srv.lines)
        check(not re.search(r"Sanitizer|runtime error", text), "no sanitizer report")
        if check.failures:
            print(srv.tail())
    finally:
        srv.kill()
        shutil.rmtree(d, ignore_errors=True)
    return check.failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_dir")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--threads", type=int, default=12)
    a = ap.parse_args()
    return run_checks(lambda: run(a), 60)


if __name__ == "__main__":
    sys.exit(main())
