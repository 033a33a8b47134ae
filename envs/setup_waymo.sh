#!/usr/bin/env bash
# Creates .venv-waymo (Python 3.11) with the pinned Waymo environment (envs/waymo-requirements.txt):
# waymo-open-dataset with its TensorFlow 2.13 and numpy 1.23, which cannot share the main .venv.
# xmbench is put on its path (a .pth file, not an install: the Waymo pins hold setuptools below what
# pyproject.toml builds with), so `.venv-waymo/bin/python -m xmbench.data.waymo.tf.convert` works anywhere.
# Idempotent: a second run only checks that everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
source envs/python311.sh
venv=.venv-waymo
[ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
[ "$(cat "$site/xmbench-repo.pth" 2>/dev/null)" = "$PWD" ] || echo "$PWD" > "$site/xmbench-repo.pth"
stamp="$venv/.requirements.sha256"
want="$(sha256sum envs/waymo-requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/pip" install --disable-pip-version-check -q -r envs/waymo-requirements.txt
  "$venv/bin/pip" check
  echo "$want" > "$stamp"
fi
