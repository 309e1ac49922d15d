# shellcheck shell=bash
# Minimal Kaldi-style option parsing for run.sh: every "--name value" whose
# name is a variable already defined in the calling script sets that variable
# ("--name=value" too). Anything else is an error, so a typo fails loudly.
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            echo "Options (current values):" >&2
            grep -E '^[a-z_]+=' "$0" | sed 's/^/  --/' >&2
            exit 0 ;;
        --*=*) _name=${1%%=*}; _value=${1#*=}; shift ;;
        --*)   [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
               _name=$1; _value=$2; shift 2 ;;
        *)     echo "$0: unexpected argument '$1' (options are --name value)" >&2; exit 1 ;;
    esac
    _name=${_name#--}
    _name=${_name//-/_}
    if ! declare -p "${_name}" >/dev/null 2>&1; then
        echo "$0: unknown option --${_name}" >&2; exit 1
    fi
    printf -v "${_name}" '%s' "${_value}"
done
unset _name _value
