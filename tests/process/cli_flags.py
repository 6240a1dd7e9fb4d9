#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: the samples' command lines, refused and accepted.

    cli_flags.py BIN_DIR

Runs pc-echo, pc-http, pc-chat and pc-stress from BIN_DIR with bad command
lines and checks the exit status (2: bad arguments) and the message on
stderr; then a few good command lines that must start (each server is killed
once it printed its "listening on" line; pc-stress runs 0.3 s against a
pc-http). Every server gets --listen 127.0.0.1:0, so one that wrongly starts
takes no fixed port; it is killed after 3 s and counted as a failure.

  source     pc-stress --source 999.1.1.1, 127.0.0.1:80, [::1], '' and ::1
             with an IPv4 URL: exit 2 naming --source, at the flag (they were
             stored unchecked: every connect failed, exit 0);
  url        pc-stress with port 0, or a blank, CR LF or a tab in the path:
             exit 2, "bad URL" (they ran: every connect refused, or a request
             line split by the blank, or headers added by the CR LF);
  tls-only   --tls-client-ca FILE, --tls-alpn LIST and --handshake-timeout MS
             without --tls-cert/--tls-key, on pc-echo, pc-http and pc-chat:
             exit 2, "... needs --tls-cert/--tls-key" (they were ignored: plain
             TCP has no handshake to bound);
  proxy-only --proxy-timeout MS and --proxy-versions V without --proxy-protocol,
             on the three servers: exit 2, "... needs --proxy-protocol" (they
             were ignored: no proxy is trusted, so no header is read);
  hs-header  pc-http with a certificate and --handshake-timeout while its
             --header-timeout is on (the default 60000, or given): exit 2,
             "--handshake-timeout has no effect while --header-timeout is on"
             (the header timeout bounds the handshake instead: the flag was
             ignored); with --header-timeout 0 it starts; skipped without TLS;
  tls-names  --tls-client-ca /nonexistent with a good pair: the message names
             --tls-client-ca and the file; --tls-alpn ',,,' names --tls-alpn
             (both blamed the certificate and key); skipped when the build has
             no TLS;
  unknown    --bogus on each of the four: "unknown argument '--bogus'" (pc-http
             and pc-stress said "bad argument ... (missing value?)"); a known
             flag at the end of the line: "FLAG needs a value";
  rate       --per-source-rate nan and 1e-7: exit 2 at the flag ("bad value
             for --per-source-rate"; NaN got to the library, exit 1);
  digits     pc-http --header-timeout +5 and --max-header-bytes ' 9000',
             pc-echo --idle-timeout ' -0' and --per-source-rate 0x10: exit 2,
             "bad value for ..." (a sign, a blank or hex was read as a number);
  max-line   pc-chat --max-line 8: exit 2 at the flag (it ran as 16);
  too-many   a 17th --listen, a 33rd --deny-list or a 9th --tls-cert: exit 2
             saying how many the flag takes (it said "bad value" of a good
             address or file);
  max-buf    --max-buffered 1000 on each server: exit 2 at the flag (below
             the library's least cap every send was refused, silently);
             65536 starts;
  bounds     pc-echo --threads 0, --max-conns 0, --proxy-timeout 0,
             --idle-timeout 86400001, --per-source-rate 1/0, --tls-alpn 'h2,'
             or a 256-byte name: exit 2 at the flag; --tls-cert without
             --tls-key: exit 2, "come in pairs"; --proxy-versions v2,v1,
             --idle-timeout 86400000, --max-buffered 0, --accept-batch-us
             100000 and --conditional-accept auto start, and -v logs info
             lines; --help exits 0;
  help       each server's --help gives its default listen address on the
             --listen line (pc-echo 7000, pc-http 8080, pc-chat 7001);
  good       pc-echo plain; pc-echo with a certificate and --handshake-timeout
             (pc-http too, with --header-timeout 0);
             pc-echo with --proxy-protocol, --proxy-timeout and --proxy-versions;
             pc-http plain (its default ALPN is no flag given);
             pc-http with a certificate, --tls-alpn h2,http/1.1 and
             --tls-client-ca; pc-chat with --per-source-rate 0.5/2; pc-stress
             --source 127.0.0.1 (and ::1 to [::1] when this host has IPv6)
             against pc-http: exit 0, requests answered.

Exit 0 on pass, 1 on failure (every failed check printed). Bounded: each
run has a time limit and an overall alarm (40 s) ends the script; servers
are killed on every exit path. Python 3 standard library only; Linux.
"""

import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proclib import Checks, Server, read_response, run_checks  # noqa: E402

HOST = "127.0.0.1"
LISTEN = ["--listen", HOST + ":0"]
DATA = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                                    "tls"))
CERT, KEY, CA = (os.path.join(DATA, f) for f in ("server.pem", "server.key", "ca.pem"))
PAIR = ["--tls-cert", CERT, "--tls-key", KEY]
RULES = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                     "samples", "http", "rules.example"))
SERVERS = ("pc-echo", "pc-http", "pc-chat")


def run(bin_dir, prog, args, wait=3.0):
    """prog ARGS: (exit status, stderr); status None when it was still running
    after wait seconds (then killed: a server that started)."""
    p = subprocess.Popen([os.path.join(bin_dir, prog)] + args, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=wait)
        return p.returncode, err.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        return None, err.decode("utf-8", "replace")


def first_line(err):
    lines = err.strip().split("\n")
    return lines[0] if lines else ""


def refused(check, bin_dir, prog, args, want, unwanted=None):
    """prog ARGS must exit 2 with want (a substring) on stderr, and without
    unwanted."""
    rc, err = run(bin_dir, prog, args)
    ok = rc == 2 and want in err and (unwanted is None or unwanted not in err)
    check(ok, "%s %s: exit 2, %r on stderr (exit %s: %r)"
          % (prog, " ".join(args), want, "running" if rc is None else rc,
             first_line(err) if want not in err else want))


def has_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def starts(check, bin_dir, prog, args):
    """prog ARGS must print its listening line; returns the Server (the
    caller kills it) or None."""
    srv = Server([os.path.join(bin_dir, prog)] + args)
    try:
        port = srv.wait_listening(5)
        check(True, "%s %s: starts (port %d)" % (prog, " ".join(args), port))
        return srv
    except Exception as e:  # Fail: no listening line
        srv.kill()
        check(False, "%s %s: starts: %s" % (prog, " ".join(args), str(e).split("\n")[0]))
        return None


def info_logged(check, srv):
    """srv (started with -v) logs the library's info lines: the server's
    start is one, written before its listening line (read by another
    thread: waited for up to 3 s)."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if any(ln.startswith("[err] portcullis info:") for ln in list(srv.lines)):
            break
        time.sleep(0.05)
    check(any(ln.startswith("[err] portcullis info:") for ln in list(srv.lines)),
          "%s: -v logs the library's info lines (%r)" % (" ".join(srv.argv[1:]), srv.tail()))


def stress_ok(check, bin_dir, url, source):
    args = [url, "--source", source, "-c", "1", "-t", "1", "-d", "0.3", "--json"]
    p = subprocess.run([os.path.join(bin_dir, "pc-stress")] + args, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    try:
        requests = json.loads(p.stdout.decode()).get("requests", 0)
    except ValueError:
        requests = 0
    check(p.returncode == 0 and requests > 0,
          "pc-stress %s: exit 0, requests answered (exit %d, %s requests; %r)"
          % (" ".join(args), p.returncode, requests,
             first_line(p.stderr.decode("utf-8", "replace"))))


def tls_built(bin_dir):
    """True when pc-echo can build a TLS context (the library has TLS)."""
    srv = Server([os.path.join(bin_dir, "pc-echo")] + LISTEN + PAIR)
    try:
        srv.wait_listening(5)
        return True
    except Exception:
        if "function not implemented" in srv.tail():
            return False
        raise
    finally:
        srv.kill()


def body(bin_dir):
    check = Checks()

    # 1. pc-stress --source: checked at the flag (port 9 is never reached)
    url4 = "http://%s:9/" % HOST
    for bad in ("999.1.1.1", "127.0.0.1:80", "[::1]", ""):
        refused(check, bin_dir, "pc-stress",
                ["--source", bad, "-c", "1", "-d", "0.3", url4], "--source needs")
    refused(check, bin_dir, "pc-stress", ["--source", "::1", "-c", "1", "-d", "0.3", url4],
            "--source ::1 is IPv6")

    # 1b. pc-stress URLs that make no request: port 0, a path that breaks the
    # request line (the server at port 9 is never reached)
    for bad in ("http://%s:0/" % HOST, "http://%s:9/a b" % HOST, "http://%s:9/a\r\nX: y" % HOST,
                "http://%s:9/\t" % HOST):
        refused(check, bin_dir, "pc-stress", [bad, "-c", "1", "-d", "0.3"], "bad URL")

    # 2. TLS-only flags without a certificate
    for prog in SERVERS:
        refused(check, bin_dir, prog, LISTEN + ["--tls-client-ca", CA],
                "--tls-client-ca needs --tls-cert/--tls-key")
        refused(check, bin_dir, prog, LISTEN + ["--tls-alpn", "h2"],
                "--tls-alpn needs --tls-cert/--tls-key")
        refused(check, bin_dir, prog, LISTEN + ["--handshake-timeout", "5000"],
                "--handshake-timeout needs --tls-cert/--tls-key")

    # 2b. PROXY protocol flags without the trusted proxies' file
    for prog in SERVERS:
        refused(check, bin_dir, prog, LISTEN + ["--proxy-timeout", "500"],
                "--proxy-timeout needs --proxy-protocol")
        refused(check, bin_dir, prog, LISTEN + ["--proxy-versions", "v2"],
                "--proxy-versions needs --proxy-protocol")

    # 3. TLS set-up errors name the input at fault
    if tls_built(bin_dir):
        for prog in ("pc-echo", "pc-http"):
            refused(check, bin_dir, prog, LISTEN + PAIR + ["--tls-client-ca", "/nonexistent"],
                    "--tls-client-ca /nonexistent", unwanted="(certificate")
            refused(check, bin_dir, prog, LISTEN + PAIR + ["--tls-alpn", ",,,"],
                    "bad value for --tls-alpn: ',,,'")
        refused(check, bin_dir, "pc-echo", LISTEN + ["--tls-cert", CERT, "--tls-key", "/nokey"],
                "--tls-key /nokey")
        for extra in ([], ["--header-timeout", "2000"]):
            refused(check, bin_dir, "pc-http",
                    LISTEN + PAIR + ["--handshake-timeout", "5000"] + extra,
                    "--handshake-timeout has no effect while --header-timeout is on")
    else:
        print("note: no TLS in this build: TLS file and ALPN messages not checked")

    # 4. unknown flags, and a known flag missing its value at the end
    for prog in SERVERS:
        refused(check, bin_dir, prog, LISTEN + ["--bogus"], "unknown argument '--bogus'",
                unwanted="missing value")
    refused(check, bin_dir, "pc-stress", [url4, "--bogus"], "unknown argument '--bogus'",
            unwanted="missing value")
    refused(check, bin_dir, "pc-http", LISTEN + ["--header-timeout"],
            "--header-timeout needs a value")
    refused(check, bin_dir, "pc-echo", LISTEN + ["--threads"], "--threads needs a value")
    refused(check, bin_dir, "pc-stress", [url4, "-H"], "-H needs a value")
    refused(check, bin_dir, "pc-stress", [url4, "--source"], "--source needs a value")

    # 6. --per-source-rate out of the library's range, at the flag
    for prog in ("pc-echo", "pc-http"):
        for rate in ("nan", "1e-7"):
            refused(check, bin_dir, prog, LISTEN + ["--per-source-rate", rate],
                    "bad value for --per-source-rate: '%s'" % rate)

    # 6b. numbers are decimal digits only: a sign or a blank in front, or hex,
    # was taken (strtoul skips blanks and reads "+5" as 5; strtod reads hex)
    refused(check, bin_dir, "pc-http", LISTEN + ["--header-timeout", "+5"],
            "bad value for --header-timeout: '+5'")
    refused(check, bin_dir, "pc-http", LISTEN + ["--max-header-bytes", " 9000"],
            "bad value for --max-header-bytes: ' 9000'")
    refused(check, bin_dir, "pc-echo", LISTEN + ["--idle-timeout", " -0"],
            "bad value for --idle-timeout: ' -0'")
    refused(check, bin_dir, "pc-echo", LISTEN + ["--per-source-rate", "0x10"],
            "bad value for --per-source-rate: '0x10'")

    # 7b. --max-buffered below the library's least cap (every send refused:
    # pc-chat sent nothing, not even its welcome, and said nothing)
    for prog in SERVERS:
        refused(check, bin_dir, prog, LISTEN + ["--max-buffered", "1000"],
                "bad value for --max-buffered: '1000' (0 for no cap, else at least 65536)")
    starts(check, bin_dir, "pc-chat", LISTEN + ["--max-buffered", "65536"])

    # 7c. one flag too many: the message gives the limit, not "bad value"
    refused(check, bin_dir, "pc-echo", LISTEN * 17,
            "--listen: at most 16 listeners", unwanted="bad value")
    refused(check, bin_dir, "pc-echo", LISTEN + ["--deny-list", os.devnull] * 33,
            "--deny-list: at most 32 list files", unwanted="bad value")
    refused(check, bin_dir, "pc-echo", LISTEN + PAIR * 9,
            "--tls-cert: at most 8 certificates", unwanted="bad value")

    # 7d. each number on the wrong side of its bound, and values the samples'
    # parser must refuse though each piece looks fine (checked at the flag,
    # whatever the build has)
    for flag, bad in (("--threads", "0"), ("--max-conns", "0"), ("--proxy-timeout", "0"),
                      ("--idle-timeout", "86400001"), ("--per-source-rate", "1/0"),
                      ("--tls-alpn", "h2,"), ("--tls-alpn", "a" * 256)):
        refused(check, bin_dir, "pc-echo", LISTEN + [flag, bad],
                "bad value for %s: '%s'" % (flag, bad))
    refused(check, bin_dir, "pc-echo", LISTEN + ["--tls-cert", CERT],
            "--tls-cert and --tls-key come in pairs")

    # 7e. pc-http's own numbers, each just past its bound (the head limit
    # from 64, the header timeout up to a day, the body limit up to 2^62);
    # at the bounds they start, and the limits given are the ones answered
    for flag, bad in (("--max-header-bytes", "63"), ("--max-header-bytes", "1073741825"),
                      ("--header-timeout", "86400001"),
                      ("--max-body-bytes", "4611686018427387905")):
        refused(check, bin_dir, "pc-http", LISTEN + [flag, bad],
                "bad value for %s: '%s'" % (flag, bad))
    srv = starts(check, bin_dir, "pc-http", LISTEN + [
        "--max-header-bytes", "64", "--header-timeout", "86400000",
        "--max-body-bytes", "10"])
    if srv:
        try:
            port = srv.wait_listening(5)
            for req, want in ((b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", 200),
                              (b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"x" * 40 + b"\r\n\r\n",
                               431),
                              (b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n",
                               405),
                              (b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n",
                               413)):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(req)
                r = read_response(s)
                s.close()
                check(r is not None and r[0] == want,
                      "pc-http --max-header-bytes 64 --max-body-bytes 10: %r answers %d (%r)"
                      % (req[:40], want, r))
        finally:
            srv.kill()

    # 7. pc-chat --max-line below the 16 it runs with at least
    refused(check, bin_dir, "pc-chat", LISTEN + ["--max-line", "8"],
            "--max-line needs a byte count from 16 to 1048576")

    # 5. --help: the default listen address on the --listen line
    for prog, addr in (("pc-echo", "127.0.0.1:7000"), ("pc-http", "127.0.0.1:8080"),
                       ("pc-chat", "127.0.0.1:7001")):
        p = subprocess.run([os.path.join(bin_dir, prog), "--help"], stdout=subprocess.PIPE,
                           timeout=5)
        out = p.stdout.decode()
        check(p.returncode == 0, "%s --help: exit 0 (exit %d)" % (prog, p.returncode))
        line = [ln for ln in out.split("\n") if ln.strip().startswith("--listen")]
        check(line and ("default " + addr) in line[0],
              "%s --help: --listen line gives the default %s (%r)"
              % (prog, addr, line[0].strip() if line else None))

    # good command lines start
    servers = []
    try:
        for prog, args in (("pc-echo", LISTEN),
                           ("pc-http", LISTEN),
                           ("pc-chat", LISTEN + ["--per-source-rate", "0.5/2"])):
            servers.append(starts(check, bin_dir, prog, args))
        servers.append(starts(check, bin_dir, "pc-echo", LISTEN + [
            "--proxy-protocol", RULES, "--proxy-timeout", "500", "--proxy-versions", "v2"]))
        # the other values and the bounds themselves: accepted
        servers.append(starts(check, bin_dir, "pc-echo", LISTEN + [
            "--proxy-protocol", RULES, "--proxy-versions", "v2,v1"]))
        verbose = starts(check, bin_dir, "pc-echo", LISTEN + [
            "--idle-timeout", "86400000", "--max-buffered", "0", "--conditional-accept", "auto",
            "--accept-batch-us", "100000", "-v"])
        servers.append(verbose)
        if verbose:
            info_logged(check, verbose)
        if tls_built(bin_dir):
            servers.append(starts(check, bin_dir, "pc-echo",
                                  LISTEN + PAIR + ["--handshake-timeout", "5000"]))
            servers.append(starts(check, bin_dir, "pc-http", LISTEN + PAIR + [
                "--handshake-timeout", "5000", "--header-timeout", "0"]))
            servers.append(starts(check, bin_dir, "pc-http", LISTEN + PAIR + [
                "--tls-alpn", "h2,http/1.1", "--tls-client-ca", CA]))
        http = servers[1]
        if http:
            stress_ok(check, bin_dir, "http://%s:%d/" % (HOST, http.port), "127.0.0.1")
        if has_ipv6():
            h6 = starts(check, bin_dir, "pc-http", ["--listen", "[::1]:0"])
            servers.append(h6)
            if h6:
                stress_ok(check, bin_dir, "http://[::1]:%d/" % h6.port, "::1")
    finally:
        for s in servers:
            if s:
                s.kill()
    return check.failures


def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print(__doc__)
        return 2
    return run_checks(lambda: body(sys.argv[1]), 40)


if __name__ == "__main__":
    sys.exit(main())
