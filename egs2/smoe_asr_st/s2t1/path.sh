# shellcheck shell=bash
# Activate the project venv (<repo>/.venv); create it on first use with the
# README's set-up command, so a fresh clone needs nothing else.
_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ ! -x "${_repo}/.venv/bin/python" ]; then
    echo "path.sh: no venv at ${_repo}/.venv; creating it with tools/setup_venv.sh" >&2
    "${_repo}/tools/setup_venv.sh" >&2
fi
# shellcheck disable=SC1091
. "${_repo}/.venv/bin/activate"
export PYTHONIOENCODING=UTF-8
# OMP_NUM_THREADS stays as the user set it: unset, PyTorch uses every core in a single job,
# and local/launch.py gives parallel jobs (decoding) an equal share of the cores each.
unset _repo
