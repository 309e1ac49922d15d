#!/usr/bin/env bash
# Create (or refresh) the project virtual environment in <repo>/.venv with uv.
#
# Idempotent: a second run with nothing changed finishes in seconds (uv
# resolves against its cache and installs nothing). Finds a Python 3.12
# interpreter explicitly, because the machine default may be another version.
#
# Usage: tools/setup_venv.sh            (honours $PYTHON and $VENV_DIR)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VENV_DIR:-${repo}/.venv}
export UV_PYTHON_DOWNLOADS=never   # never fetch an interpreter: use the machine's

find_python() {
    local c
    for c in "${PYTHON:-}" python3.12 "$(command -v pyenv >/dev/null 2>&1 && echo "$(pyenv root)/versions/3.12"*/bin/python3.12)" \
             /root/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do
        [ -n "${c}" ] || continue
        # pyenv shims exist for versions that are not selected and then fail: run it to be sure
        if "${c}" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
            command -v "${c}" 2>/dev/null || echo "${c}"
            return 0
        fi
    done
    return 1
}

if ! py=$(find_python); then
    echo "ERROR: no Python 3.12 interpreter found (tried \$PYTHON, python3.12, pyenv versions," >&2
    echo "       /usr/local/bin, /usr/bin). Install Python 3.12 or set PYTHON=/path/to/python3.12." >&2
    exit 1
fi

# a uv installed by an earlier run of this script lives in ~/.local/bin
export PATH="${HOME}/.local/bin:${PATH}"
if ! command -v uv >/dev/null 2>&1; then
    echo "uv not found: installing it for this user with pip" >&2
    python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
fi

if [ ! -x "${venv}/bin/python" ] || ! "${venv}/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    uv venv --quiet --python "${py}" "${venv}"
fi
# Editable install: the recipe and the tests use the checkout's code; the recipe's
# own dependencies (data prep, scoring, charts) are the "recipe" extra.
# --compile-bytecode: uv installs no .pyc by default, and where PYTHONDONTWRITEBYTECODE is
# set (as on the project's machines) every process would compile each module it imports
# from source: ~15 s more per ESPnet process (bench/bench_decode.py measures it).
# --constraint: the exact versions of every dependency (tools/constraints.txt says why).
uv pip install --quiet --compile-bytecode --python "${venv}/bin/python" --constraint "${repo}/tools/constraints.txt" \
    -e "${repo}[recipe,test]"
# a venv made before this script compiled bytecode: uv compiles only what it installs
site=$("${venv}/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -d "${site}/espnet2/__pycache__" ]; then
    echo "compiling the venv's modules to bytecode (once)" >&2
    # (a few packages ship test files that are not valid Python 3.12; nothing imports them)
    "${venv}/bin/python" -m compileall -q -j 0 "${site}" >/dev/null || true
fi
"${venv}/bin/python" -c 'import sys, torch, espnet2, espnet_smoe; print("venv ready:", sys.executable, "torch", torch.__version__)'
