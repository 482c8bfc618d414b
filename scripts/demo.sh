#!/usr/bin/env bash
# The README's first command: set up, start the reference server on demo data, show the CLI working.
set -euo pipefail
source "$(dirname "$0")/_setup.sh" all
exec ventros demo "$@"
