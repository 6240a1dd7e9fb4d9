#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every source file under src include samples tests bench scripts cmake
# (.c .h .py .sh .cmake .cmake.in CMakeLists.txt), and the top-level
# CMakeLists.txt, carries an
# "SPDX-License-Identifier: MIT" line within its first 5 lines.
# Exits 0 when all do; otherwise lists the ones that do not and exits 1.
# Usage: scripts/check-spdx.sh [ROOT]   (default: the repository root)
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

dirs=()
for d in src include samples tests bench scripts cmake; do
  [ -d "$d" ] && dirs+=("$d")
done
[ -f CMakeLists.txt ] && dirs+=(CMakeLists.txt) # the top-level build file
[ ${#dirs[@]} -gt 0 ] || { echo "check-spdx: no source directories under $root" >&2; exit 2; }

missing=()
checked=0
while IFS= read -r -d '' f; do
  checked=$((checked + 1))
  head -n 5 "$f" | grep -q 'SPDX-License-Identifier: MIT' || missing+=("$f")
done < <(find "${dirs[@]}" \( -name corpus -o -name __pycache__ -o -name '.*' \) -prune -o \
           -type f \( -name '*.c' -o -name '*.h' -o -name '*.py' -o -name '*.sh' -o \
           -name '*.cmake' -o -name '*.cmake.in' -o -name CMakeLists.txt \) -print0 | sort -z)

if [ ${#missing[@]} -ne 0 ]; then
  echo "check-spdx: ${#missing[@]} of $checked files lack 'SPDX-License-Identifier: MIT' in their first 5 lines:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi
echo "check-spdx: $checked files, all carry SPDX-License-Identifier: MIT"
