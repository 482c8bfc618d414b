#!/usr/bin/env bash
# The README's second command (and CI's): set up, then every check the project has.
set -euo pipefail
source "$(dirname "$0")/_setup.sh" dev

step() { printf '\n==> %s\n' "$*"; }
step "buf lint";            buf lint
step "buf breaking (against the committed v1 baseline)"; buf breaking --against baseline/ventros-v1.binpb
step "generated code in sync"
check=$(mktemp -d .gen-check-XXXX) && trap 'rm -rf "$check"' EXIT
buf generate --output "$check" 2>/dev/null
diff -r -x __pycache__ "$check/sdk/ventros/_generated" sdk/ventros/_generated \
  || { echo "generated code is stale: run 'buf generate' and commit" >&2; exit 1; }
step "ruff lint";           ruff check .
step "ruff format";         ruff format --check .
step "mypy";                mypy
step "pytest";              pytest "$@"
