#!/usr/bin/env bash
# Entry point of `pnpm bench` / `pnpm bench:quick`: raise the file-descriptor limit (10,000 idle
# connections need 10,000 descriptors on each side), then run the orchestrator in one Node process.
set -euo pipefail
cd "$(dirname "$0")/.."
want=65536  # or the hard limit, when that is lower (20,000 here: enough, server and generator are separate processes)
if [ "$(ulimit -n)" != "unlimited" ] && [ "$(ulimit -n)" -lt "$want" ]; then
  ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
# our servers run the packages' compiled output, as a user's process would
pnpm -s build
exec node --conditions=source --import tsx bench/src/run.ts "$@"
