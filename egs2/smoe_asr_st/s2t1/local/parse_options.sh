# shellcheck shell=bash
# Minimal Kaldi-style option parsing for run.sh and local/run_table.sh: the options are the
# "name=default" lines at the top of the calling script, before it sources this file; "--name value"
# (or "--name=value", dashes in the name read as underscores) sets one. Anything else is an error, so
# a typo fails loudly. --help prints the script's opening comment, then those lines with their
# comments (an indented comment line below an option continues its comment).
_options=$(sed -n '1,/parse_options\.sh/p' "$0" | grep -E '^[a-z][a-z0-9_]*=')
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            {
                sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
                printf '\nOptions (name=default  # meaning):\n'
                sed -n '1,/parse_options\.sh/p' "$0" | awk '
                    /^[a-z][a-z0-9_]*=/ { print "  --" $0; option = 1; next }
                    option && /^[ \t]+#/ { print "    " $0; next }
                    { option = 0 }'
            } >&2
            exit 0 ;;
        --*=*) _name=${1%%=*}; _value=${1#*=}; shift ;;
        --*)   [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
               _name=$1; _value=$2; shift 2 ;;
        *)     echo "$0: unexpected argument '$1' (options are --name value; see $0 --help)" >&2; exit 1 ;;
    esac
    _name=${_name#--}
    _name=${_name//-/_}
    if ! grep -qE "^${_name}=" <<< "${_options}"; then
        echo "$0: unknown option --${_name} (see $0 --help)" >&2; exit 1
    fi
    printf -v "${_name}" '%s' "${_value}"
done
unset _name _value _options
