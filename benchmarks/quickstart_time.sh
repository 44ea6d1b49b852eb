#!/usr/bin/env bash
# The README Quickstart's first command, timed as a new user meets it: a fresh copy of the
# tracked files, empty pip, vaelab and Inductor caches (fresh), then the same command again in
# the same directory (cached). Prints whole-command seconds and their ratio; quoted in
# BENCHMARKS.md ("Speed on the user's machine"). Usage: bash benchmarks/quickstart_time.sh [ROUNDS]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds=${1:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for r in $(seq 1 "$rounds"); do
  d="$work/round-$r"
  mkdir -p "$d/src" "$d/cache"
  (cd "$repo" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$d/src"
  cd "$d/src"
  export XDG_CACHE_HOME="$d/cache" TORCHINDUCTOR_CACHE_DIR="$d/cache/inductor" PIP_NO_CACHE_DIR=1
  unset VAELAB_CACHE_DIR
  t0=$(date +%s.%N)
  bash scripts/setup.sh >/dev/null && .venv/bin/vaelab train --out runs/default >/dev/null 2>&1
  t1=$(date +%s.%N)
  rm -rf runs/default
  bash scripts/setup.sh >/dev/null && .venv/bin/vaelab train --out runs/default >/dev/null 2>&1
  t2=$(date +%s.%N)
  python3 -c "f=$t1-$t0; c=$t2-$t1; print(f'round $r: fresh {f:.1f} s, cached {c:.1f} s, ratio {f/c:.2f}')"
  cd "$repo"
done
