#!/usr/bin/env bash
# Creates .venv (Python 3.11) with the pinned main environment and xmbench installed in it.
# Idempotent: a second run only checks that everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
source envs/python311.sh
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.requirements.sha256"
want="$(cat envs/requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install --disable-pip-version-check -q -r envs/requirements.txt
  .venv/bin/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
  .venv/bin/pip check
  echo "$want" > "$stamp"
fi
# The Waymo tools (conversion, the TFRecord generator, Waymo's metric ops) need TensorFlow 2.13 and
# numpy 1.23, which clash with this environment: they get their own .venv-waymo.
bash envs/setup_waymo.sh
