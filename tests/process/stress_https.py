#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: pc-stress https:// against pc-http over TLS.

    stress_https.py BIN_DIR [--backend NAME] [--data DIR]

Starts BIN_DIR/pc-http --tls-cert/--tls-key with the test certificates
(tests/data/tls: a server certificate for localhost/127.0.0.1 signed by
ca.pem, and other-ca.pem, a CA that signed nothing here) and runs
BIN_DIR/pc-stress --json against it:

  verified   https://localhost:PORT/ --cacert ca.pem, 4 keep-alive connections:
             requests answered, no error, every connection one full handshake
             and none resumed, the report says verified;
  wrong CA   --cacert other-ca.pem: no request, every failure a tls_handshake
             error;
  insecure   --insecure with the same server: requests, no error;
  resume     --close --tls-resume, one connection: several full handshakes
             would be possible, but resumed ones must appear (> 0), and full +
             resumed = connects;
  no resume  --close without --tls-resume: every handshake full;
  renewal    openssl s_client (when the openssl tool is installed): a TLS 1.3
             session resumed with its ticket gets a fresh NewSessionTicket
             (RFC 8446 C.4: a client should not offer a ticket twice), and
             that new ticket resumes too;
  proxy v2   --proxy-v2 from 127.0.0.4 to a second pc-http that trusts it
             (--proxy-protocol): requests, no error, and that server counts
             one PROXY header per connection, up to -c more for connections
             the run's end cut off (its /metrics, asked over TLS from an
             untrusted source): the header goes before the TLS handshake;
  flood      one TLS connection pipelines 3000 GET /metrics (about 19 MB of
             answers, past the 4 MiB a connection may queue) and a last request
             with Connection: close: every one answered, then the close; the
             requests past high water wait for the queue to drain, and the
             records a pause kept are decrypted before newer ones;
  rejected   from 127.0.0.5 to a third pc-http whose rules deny it, kernel
             filter off: no request, every failure a reset (the server resets
             the connection during the handshake), none a tls_handshake error;
  alert      a Python server that answers every ClientHello with a fatal
             alert and resets the connection 50 ms later: every failure a
             tls_handshake error (the reset follows the failure);
  usage      --cacert with an http:// URL, and --cacert with --insecure: exit 2.

Exit 0 on pass, 1 on failure (every failed check printed), 77 when pc-http
has no TLS (built without OpenSSL). Bounded: each pc-stress run has a time
limit, an overall alarm (60 s) ends the run; the server is killed on every
exit path. Python 3 standard library only.
"""

import argparse
import os
import re
import select
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

from proclib import Checks, Fail, Server, run_stress, set_budget, stress_json  # noqa: E402


def s_client(port, ca, sess_in, sess_out):
    """One TLS 1.3 connection with openssl s_client: (reused?, tickets seen)."""
    args = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", ca,
            "-tls1_3", "-msg", "-sess_out", sess_out]
    if sess_in:
        args += ["-sess_in", sess_in]
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    time.sleep(0.5)  # stdin held open a moment: the tickets follow the handshake
    out, _ = p.communicate(b"", timeout=10)
    out = out.decode("utf-8", "replace")
    return "Reused, TLSv1.3" in out, out.count("NewSessionTicket")


def https_get(port, ca, path, src):
    ctx = ssl.create_default_context(cafile=ca)
    raw = socket.socket()
    raw.settimeout(5)
    raw.bind((src, 0))
    raw.connect(("127.0.0.1", port))
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                   % path).encode())
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    return out.decode("latin-1")


def tls_flood(port, ca, n):
    """n pipelined GET /metrics and a closing GET / on one TLS connection,
    written while the answers are read, from one thread (an SSL object must
    not be read and written by two threads at once: a sender thread beside
    the reader made this step see an empty read now and then): (200 answers,
    other statuses)."""
    ctx = ssl.create_default_context(cafile=ca)
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.setblocking(False)
    reqs = memoryview(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n" * n +
                      b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    pending = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError)
    out = bytearray()
    sent = 0
    end = time.monotonic() + 60
    try:
        eof = False
        while not eof and time.monotonic() < end:
            select.select([s], [s] if sent < len(reqs) else [], [], 0.5)
            if sent < len(reqs):
                try:
                    sent += s.send(reqs[sent:sent + 65536])
                except pending:
                    pass
            try:
                while True:
                    d = s.recv(1 << 20)
                    if not d:
                        eof = True
                        break
                    out += d
            except pending:
                pass
        if not eof:
            print("flood: no end of stream within 60 s (%d of %d bytes sent)"
                  % (sent, len(reqs)))
    except (OSError, ssl.SSLError) as e:
        print("flood: read ended: %s" % e)
    s.close()
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", bytes(out))
    ok = sum(1 for st in statuses if st == b"200")
    return ok, len(statuses) - ok


def tls_http(a, data, *extra):
    """pc-http over TLS with the test certificate on a free port, with extra flags."""
    return Server([os.path.join(a.bin_dir, "pc-http"), "--listen", "127.0.0.1:0", "--threads", "2",
                   "--backend", a.backend, "--tls-cert", os.path.join(data, "server.pem"),
                   "--tls-key", os.path.join(data, "server.key")] + list(extra))


def write_file(d, name, text):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def proxy_v2(a, data, ca, common, check):
    d = tempfile.mkdtemp()
    srv = tls_http(a, data, "--proxy-protocol", write_file(d, "trusted", "allow 127.0.0.4\n"))
    try:
        port = srv.wait_listening(10)
        url = "https://localhost:%d/" % port
        j = stress_json(a.bin_dir, [url, "--cacert", ca, "--proxy-v2", "--source", "127.0.0.4",
                                 "--close", "-c", "2", "-d", "0.5"] + common)
        print("proxy v2: %d requests, %d connects, errors %s"
              % (j["requests"], j["connects"], j["errors"]))
        check(j["requests"] > 0 and j["errors_total"] == 0,
              "proxy v2: requests answered, no error (%s)" % j["errors"])
        m = re.search(r"^pc_proxy_headers_total (\d+)$", https_get(port, ca, "/metrics", "127.0.0.9"),
                      re.M)
        headers = int(m.group(1)) if m else -1
        # a connection the run's end cut off after its header but before
        # its handshake completed is not in connects: at most one per -c
        check(j["connects"] <= headers <= j["connects"] + 2,
              "proxy v2: one header parsed per connection (%d for %d connects)"
              % (headers, j["connects"]))
        check(srv.alive(), "proxy v2: pc-http still running")
    finally:
        srv.kill()
        shutil.rmtree(d)


def rejected(a, data, common, check):
    """A client the rules deny, judged after the accept (no kernel filter):
    the server resets it during the TLS handshake, and pc-stress counts a
    reset, as it does without TLS, not a TLS failure."""
    d = tempfile.mkdtemp()
    rules = write_file(d, "rules", "deny 127.0.0.5\nallow 127.0.0.0/8\n")
    srv = tls_http(a, data, "--rules", rules, "--kernel-filter", "off")
    try:
        port = srv.wait_listening(10)
        j = stress_json(a.bin_dir, ["https://127.0.0.1:%d/" % port, "--insecure", "--source",
                                 "127.0.0.5", "-c", "2", "-d", "0.5"] + common)
        print("rejected: %d requests, errors %s" % (j["requests"], j["errors"]))
        check(j["requests"] == 0 and j["errors_total"] > 0 and
              j["errors"]["reset"] == j["errors_total"],
              "rejected: every connection a reset, none a tls_handshake error (%s)" % j["errors"])
        check(srv.alive(), "rejected: pc-http still running")
    finally:
        srv.kill()
        shutil.rmtree(d)


def alert_then_reset(a, common, check):
    """A server that fails every handshake with a fatal alert and resets the
    connection 50 ms later, while the client lingers: the failure came first,
    so pc-stress counts tls_handshake errors, not resets (the library keeps
    the error behind the close's reason when a reset follows)."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    ls.settimeout(0.1)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                c.settimeout(2)
                c.recv(4096)  # the ClientHello
                c.sendall(bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]))  # handshake_failure
                time.sleep(0.05)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            finally:
                c.close()  # with SO_LINGER 0: a reset

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        j = stress_json(a.bin_dir, ["https://127.0.0.1:%d/" % ls.getsockname()[1], "--insecure",
                                 "-c", "1", "-d", "0.5"] + common)
        print("alert, then reset: %d requests, errors %s" % (j["requests"], j["errors"]))
        check(j["requests"] == 0 and j["errors_total"] > 0 and
              j["errors"]["tls_handshake"] == j["errors_total"],
              "alert, then reset: every failure a tls_handshake error (%s)" % j["errors"])
    finally:
        stop.set()
        t.join()
        ls.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_dir")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "..", "data", "tls"))
    a = ap.parse_args()
    data = os.path.abspath(a.data)
    ca, other = os.path.join(data, "ca.pem"), os.path.join(data, "other-ca.pem")
    set_budget(60)

    helptext = subprocess.run([os.path.join(a.bin_dir, "pc-http"), "--help"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout
    if b"--tls-cert" not in helptext:
        print("SKIP: pc-http has no --tls-cert")
        return 77

    check = Checks()

    srv = tls_http(a, data)
    try:
        port = srv.wait_listening(10)
        url = "https://localhost:%d/" % port
        common = ["-t", "2", "--timeout", "5000"]

        j = stress_json(a.bin_dir, [url, "--cacert", ca, "-c", "4", "-d", "1"] + common)
        tls = j.get("tls", {})
        print("verified: %d requests, %d connects, tls %s" % (j["requests"], j["connects"], tls))
        check(j["requests"] > 0, "verified: requests answered")
        check(j["errors_total"] == 0, "verified: no error (%s)" % j["errors"])
        check(tls.get("verify") is True and tls.get("resume") is False,
              "verified: the report says verified, no resumption")
        check(tls.get("full", 0) == j["connects"] and j["connects"] >= 4,
              "verified: one full handshake per connection (%s full, %d connects)"
              % (tls.get("full"), j["connects"]))
        check(tls.get("resumed", -1) == 0, "verified: none resumed")
        check(tls.get("full_handshake_us", {}).get("p50", 0) > 0,
              "verified: handshake percentiles reported")

        j = stress_json(a.bin_dir, [url, "--cacert", other, "-c", "2", "-d", "0.5"] + common)
        print("wrong CA: %d requests, errors %s" % (j["requests"], j["errors"]))
        check(j["requests"] == 0, "wrong CA: no request")
        check(j["errors"]["tls_handshake"] > 0 and
              j["errors"]["tls_handshake"] == j["errors_total"],
              "wrong CA: every failure is a tls_handshake error")

        j = stress_json(a.bin_dir, [url, "--insecure", "-c", "2", "-d", "0.5"] + common)
        print("insecure: %d requests, errors %d" % (j["requests"], j["errors_total"]))
        check(j["requests"] > 0 and j["errors_total"] == 0, "insecure: requests, no error")
        check(j["tls"]["verify"] is False, "insecure: the report says not verified")

        j = stress_json(a.bin_dir, [url, "--cacert", ca, "--close", "--tls-resume", "-c", "1",
                                 "-d", "1"] + common)
        tls = j["tls"]
        print("resume: %d connects, tls %s" % (j["connects"], tls))
        check(j["errors_total"] == 0, "resume: no error (%s)" % j["errors"])
        check(tls["resumed"] > 0, "resume: resumed handshakes (%d)" % tls["resumed"])
        check(tls["full"] >= 1, "resume: the first handshake full")
        check(tls["full"] + tls["resumed"] == j["connects"], "resume: full + resumed = connects")
        check(tls["resumed_handshake_us"]["p50"] > 0, "resume: resumed percentiles reported")

        j = stress_json(a.bin_dir, [url, "--cacert", ca, "--close", "-c", "1", "-d", "0.5"] + common)
        print("no resume: %d connects, tls %s" % (j["connects"], j["tls"]))
        check(j["connects"] > 1 and j["tls"]["full"] == j["connects"] and
              j["tls"]["resumed"] == 0, "no resume: every handshake full")

        if shutil.which("openssl"):
            d = tempfile.mkdtemp()
            try:
                s1, s2, s3 = (os.path.join(d, n) for n in ("s1", "s2", "s3"))
                reused, t1 = s_client(port, ca, None, s1)
                check(not reused and t1 > 0, "renewal: a full handshake gets tickets (%d)" % t1)
                reused, t2 = s_client(port, ca, s1, s2)
                check(reused and t2 > 0,
                      "renewal: the resumed handshake gets a new ticket (reused %s, %d tickets)"
                      % (reused, t2))
                reused, _ = s_client(port, ca, s2, s3)
                check(reused, "renewal: the renewed ticket resumes")
            finally:
                shutil.rmtree(d)
        else:
            print("skip: renewal (no openssl tool)")

        ok, other = tls_flood(port, ca, 3000)
        print("flood: %d answered 200, %d other" % (ok, other))
        check(ok == 3001 and other == 0,
              "flood: 3001 pipelined requests over TLS all answered (%d, %d other)" % (ok, other))

        proxy_v2(a, data, ca, common, check)
        rejected(a, data, common, check)
        alert_then_reset(a, common, check)

        rc, _, err = run_stress(a.bin_dir, ["http://127.0.0.1:%d/" % port, "--cacert", ca])
        check(rc == 2 and "https://" in err, "usage: --cacert with http:// is exit 2 (%d)" % rc)
        rc, _, err = run_stress(a.bin_dir, [url, "--cacert", ca, "--insecure"])
        check(rc == 2, "usage: --cacert with --insecure is exit 2 (%d)" % rc)
        check(srv.alive(), "pc-http still running")
    except Fail as e:
        check(False, str(e))
    finally:
        srv.kill()
    if check.failures:
        print("server output:\n" + srv.tail())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
