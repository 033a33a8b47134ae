"""The README's figures are the code's: the GPU-hours table and the grid size of config/paper.yaml."""
import re
from pathlib import Path

from xmbench import grid
from xmbench.config import load_config
from xmbench.cost import cost_summary_markdown

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def test_the_gpu_hours_table_is_what_gpu_hours_prints():
    block = re.search(r"<!-- gpu_hours (\S+) -->\n(.*?)<!-- /gpu_hours -->", README, re.S)
    assert block, "README lost its gpu_hours block"
    assert block.group(2) == cost_summary_markdown(load_config(REPO / block.group(1))), (
        "regenerate it: .venv/bin/python -m xmbench.cli gpu-hours --config config/paper.yaml")


def test_the_grid_sizes_quoted_are_the_configs():
    n = len(grid.cells(load_config(REPO / "config" / "paper.yaml")))
    quoted = {int(m) for m in re.findall(r"(\d+)[- ]cells?\b", README)}
    assert quoted == {n}, f"README quotes {quoted} cells; config/paper.yaml has {n}"


def test_there_is_a_license():
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0" in text and "License" in README
