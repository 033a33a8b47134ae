"""The Waymo environment (.venv-waymo) and the helpers the other Waymo tests use to call into it.

The Waymo modules run only there (TensorFlow 2.13, numpy 1.23); these tests run in the main
environment and reach them through subprocesses. A fresh machine gets the environment from
``envs/setup_waymo.sh`` (about two minutes, once; later runs only check its stamp).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WAYMO_PY = REPO / ".venv-waymo" / "bin" / "python"


def _setup_env() -> Path:
    proc = subprocess.run(["bash", str(REPO / "envs" / "setup_waymo.sh")], cwd=REPO, capture_output=True,
                          text=True, timeout=1500)
    if proc.returncode != 0:
        pytest.fail(f"envs/setup_waymo.sh failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return WAYMO_PY


@pytest.fixture(scope="session")
def waymo_python() -> Path:
    """The Waymo environment's interpreter, created on first use."""
    return _setup_env()


def run_waymo(args: list[str], timeout: int = 300, env: dict | None = None,
              check: bool = True) -> subprocess.CompletedProcess:
    """Run ``.venv-waymo/bin/python ARGS`` from the repository root."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop("PYTHONPATH", None)  # nothing from the main environment may leak in
    proc = subprocess.run([str(WAYMO_PY), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=full_env)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args[:3])} ... failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


def test_setup_is_idempotent_and_pins_hold(waymo_python):
    again = subprocess.run(["bash", "envs/setup_waymo.sh"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "" and again.stderr == ""  # the stamp matches: nothing reinstalled
    # xmbench itself is on the path through a .pth file (pip sees the repository's egg-info).
    freeze = run_waymo(["-m", "pip", "freeze", "--all", "--exclude", "pip", "--exclude", "xmbench"]).stdout.split()
    pinned = [line for line in (REPO / "envs" / "waymo-requirements.txt").read_text().split()
              if "==" in line and not line.startswith("#")]
    assert sorted(p.lower() for p in freeze) == sorted(p.lower() for p in pinned)
    assert not [p for p in freeze if p.lower().startswith(("nvidia", "torch"))]  # CPU only, no main-env packages
    run_waymo(["-m", "pip", "check"])


def test_waymo_modules_import_without_the_main_environment(waymo_python):
    code = ("import sys, importlib.util as u\n"
            "import xmbench.data.waymo.tf.convert, xmbench.data.synthetic.waymo_writer, xmbench.data.waymo.tf.metrics\n"
            "import numpy, tensorflow, google.protobuf as pb\n"
            "assert u.find_spec('torch') is None and 'torch' not in sys.modules\n"
            "print(numpy.__version__, tensorflow.__version__, pb.__version__)\n")
    out = run_waymo(["-c", code]).stdout.split()
    assert out[:2] == ["1.23.5", "2.13.0"] and out[2].startswith("4.")
