"""Loaded by Python at start when this folder is on PYTHONPATH (the tests' OpenPCDet subprocesses
only): installs the CPU stand-ins before OpenPCDet is imported."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from openpcdet_cpu import standin  # noqa: E402

standin.install()
