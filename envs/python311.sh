# Sourced by envs/setup*.sh: sets PY to a Python 3.11 ($PYTHON if given), or stops with the fix.
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do command -v "$cand" >/dev/null && { PY="$cand"; break; }; done
fi
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
