#!/usr/bin/env bash
# Installs what the workspace needs on a machine that has only Node, npm and Python:
# pnpm (through npm, or corepack without its signature check), then the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pnpm >/dev/null 2>&1; then
  npm install -g pnpm@10 >/dev/null 2>&1 || { COREPACK_INTEGRITY_KEYS=0 corepack enable pnpm; }
fi
if [ "${CI:-}" = "true" ]; then
  pnpm install --frozen-lockfile --reporter=append-only
else
  pnpm install --reporter=silent
fi
