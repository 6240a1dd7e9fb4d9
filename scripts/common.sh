# SPDX-License-Identifier: MIT
# Shared helpers for the project's scripts (sourced).
# shellcheck shell=bash

PC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PC_ROOT

pc_log() { printf '\n==> %s\n' "$*"; }

# Install Debian packages that are missing (non-interactive; apt-get update
# at most once per run).
pc_need_pkgs() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  pc_log "installing: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "installing ${missing[*]} needs root: run this as root, or install sudo" >&2
      exit 1
    fi
    sudo="sudo"
  fi
  if [ -z "${PC_APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq
    PC_APT_UPDATED=1
  fi
  # through env, after sudo: sudo's env_reset would drop a variable set before it
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pc_base_pkgs() {
  pc_need_pkgs build-essential cmake pkg-config libmimalloc-dev libcmocka-dev liburing-dev python3 \
    libssl-dev openssl `# the TLS layer (src/tls), its test certificates` \
    libbpf-dev clang # libbpf-dev, clang: the eBPF tier of the kernel filter (cmake/PortcullisEbpf.cmake)
}

# pc_demo_certs DIR: a throw-away certificate authority (DIR/ca.pem, ca.key)
# and a server certificate for localhost, 127.0.0.1 and ::1 signed by it
# (DIR/server.pem: the chain the server sends; DIR/server.key), ECDSA P-256;
# kept when they are there and valid. Made in a scratch directory and moved
# into DIR only when every step passed, so a failed run leaves nothing a
# later run takes for done. Returns non-zero on failure: callers test it in
# a condition, where set -e stops nothing, so every step is checked here.
pc_demo_certs() {
  local d=$1 t
  # kept when the server certificate verifies against the CA for localhost
  # (a chain left broken by an older copy of this code, or expired, is remade)
  if [[ -s $d/ca.pem && -s $d/server.pem && -s $d/server.key ]] &&
    openssl verify -CAfile "$d/ca.pem" -verify_hostname localhost "$d/server.pem" >/dev/null 2>&1; then
    return 0
  fi
  mkdir -p "$d" && t=$(mktemp -d "$d/.new.XXXXXX") || return 1
  if ! pc__demo_certs_in "$t" 2>"$t/openssl.log"; then
    echo "pc_demo_certs: making the certificates in $d failed:" >&2
    cat "$t/openssl.log" >&2
    rm -rf "$t"
    return 1
  fi
  # server.pem last: the three files are what says "done"
  mv -f "$t/ca.key" "$t/ca.pem" "$t/server.key" "$d/" && mv -f "$t/server.pem" "$d/" &&
    rm -rf "$t"
}

pc__demo_certs_in() { # DIR: every file made in DIR, each step checked
  local t=$1
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=portcullis demo CA" -keyout "$t/ca.key" -out "$t/ca.pem" &&
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj "/CN=localhost" -keyout "$t/server.key" -out "$t/server.csr" &&
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
      "basicConstraints=CA:FALSE" "keyUsage=digitalSignature" "extendedKeyUsage=serverAuth" \
      >"$t/server.ext" &&
    openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
      -days 825 -extfile "$t/server.ext" -out "$t/server.crt" &&
    cat "$t/server.crt" "$t/ca.pem" >"$t/server.pem" && # the chain: its certificate, then the CA's
    chmod 600 "$t/ca.key" "$t/server.key"
}

# pc_help_has PROGRAM FLAG: whether PROGRAM --help mentions FLAG. The help is
# captured whole: piped to grep -q, PROGRAM could be killed by SIGPIPE once
# grep had its match, and with pipefail that read as "no".
pc_help_has() {
  local help
  help=$("$1" --help 2>&1 || true)
  [[ $help == *"$2"* ]]
}

# build jobs: PC_JOBS, else one per CPU
pc_jobs() { echo "${PC_JOBS:-$(nproc 2>/dev/null || echo 2)}"; }
