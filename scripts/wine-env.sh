# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Wine and cache settings shared by scripts/deps-windows.sh and
# scripts/build-windows.sh. Source it; it defines functions and sets a few
# variables, and runs nothing. It sources scripts/common.sh (PC_ROOT, pc_log,
# pc_need_pkgs).
#
#   PC_CACHE        ${PC_DEPS_CACHE:-$HOME/.cache/portcullis}: deps and Wine prefix live here
#   pc_die MSG      print "error: MSG" and exit 1
#   pc_wine_env     export WINEPREFIX WINEARCH WINEDEBUG WINEDLLOVERRIDES DISPLAY,
#                   set PC_WINE (loader) and PC_WINESERVER
#   pc_wine_init    create and boot the Wine prefix once (stamp file inside it)

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PC_CACHE="${PC_DEPS_CACHE:-${HOME:?HOME is not set}/.cache/portcullis}"
[[ $PC_CACHE == /* ]] || PC_CACHE="$PWD/$PC_CACHE" # Wine wants absolute paths

pc_die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

pc_wine_env() {
  PC_WINE=""
  local c
  for c in /usr/lib/wine/wine64 /usr/lib64/wine/wine64 "$(command -v wine64 || true)" \
           "$(command -v wine || true)"; do
    if [[ -n $c && -x $c ]]; then
      PC_WINE=$c
      break
    fi
  done
  [[ -n $PC_WINE ]] || pc_die "no Wine loader found (apt-get install wine64)"

  PC_WINESERVER=""
  for c in "$(dirname "$PC_WINE")/wineserver" "$(dirname "$PC_WINE")/wineserver64" \
           "$(command -v wineserver || true)"; do
    if [[ -n $c && -x $c ]]; then
      PC_WINESERVER=$c
      break
    fi
  done
  [[ -n $PC_WINESERVER ]] || pc_die "no wineserver next to $PC_WINE"

  export WINEPREFIX="${WINEPREFIX:-$PC_CACHE/wineprefix}"
  [[ $WINEPREFIX == /* ]] || WINEPREFIX="$PWD/$WINEPREFIX"
  export WINEARCH=win64
  export WINEDEBUG="${PC_WINEDEBUG:--all}"
  # No Gecko (mshtml) or Mono (mscoree) install prompts; there is no display.
  export WINEDLLOVERRIDES="mscoree,mshtml="
  export DISPLAY=
}

pc_wine_init() {
  pc_wine_env
  local stamp="$WINEPREFIX/.portcullis-prefix"
  [[ -f $stamp ]] && return 0

  mkdir -p "$(dirname "$WINEPREFIX")"
  # Two builds on one machine must not boot the same prefix at once.
  local lock="$WINEPREFIX.lock"
  exec {pc_lock_fd}>"$lock"
  flock "$pc_lock_fd"
  if [[ ! -f $stamp ]]; then
    local t0=$SECONDS version
    version=$("$PC_WINE" --version 2>/dev/null || echo unknown)
    pc_log "initialising Wine prefix $WINEPREFIX ($version)"
    "$PC_WINE" wineboot -i >/dev/null 2>&1 ||
      pc_die "wineboot -i failed in $WINEPREFIX (run with PC_WINEDEBUG=err+all to see why)"
    "$PC_WINE" cmd /c exit 0 >/dev/null 2>&1 ||
      pc_die "Wine prefix $WINEPREFIX does not run programs"
    # Wait for the wineserver to exit, so the registry is on disk.
    "$PC_WINESERVER" -w
    [[ -f $WINEPREFIX/system.reg ]] || pc_die "Wine prefix $WINEPREFIX was not created"
    printf '%s\n' "$version" >"$stamp"
    pc_log "Wine prefix ready in $((SECONDS - t0)) s"
  fi
  flock -u "$pc_lock_fd"
  exec {pc_lock_fd}>&-
}
