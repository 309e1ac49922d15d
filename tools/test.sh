#!/usr/bin/env bash
# Lint the code (ruff) and run the whole test suite (unit, ESPnet launchers,
# recipe end to end on a small slice) in the project venv, creating the venv first if needed.
#   ./tools/test.sh                 # everything
#   ./tools/test.sh test/espnet_smoe -k decoder    # any pytest arguments
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${repo}"
tools/setup_venv.sh
# Lint first (ruff.toml: pyflakes, pycodestyle, import order): a lint error fails the command.
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
