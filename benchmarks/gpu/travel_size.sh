#!/usr/bin/env bash
# Bytes of a copy of the working tree (tracked files + untracked files git does not ignore) plus
# the paths given, against a 64 MiB limit on what a remote GPU machine is sent. Exit 1 if over.
#   bash benchmarks/gpu/travel_size.sh packed
set -eu
cd "$(git rev-parse --show-toplevel)"
tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s += $1} END {print s + 0}')
carried=0
for p in "$@"; do
  carried=$((carried + $(find "$p" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')))
done
limit=$((64 * 1024 * 1024))
total=$((tree + carried))
printf 'working tree %d + carried %d = %d bytes (limit %d): %s\n' "$tree" "$carried" "$total" "$limit" \
  "$([ $total -le $limit ] && echo fits || echo OVER)"
[ $total -le $limit ]
