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

# build jobs: PC_JOBS, else one per CPU
pc_jobs() { echo "${PC_JOBS:-$(nproc 2>/dev/null || echo 2)}"; }
