"""Editing code re-runs exactly the jobs that run it: `snakemake -n` after an edit, on a copy of the repo.

The copy's outputs are made up to date without running anything (`--touch -F` records Snakemake's
metadata, params included), so the test sees the planning only, in seconds per plan.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from repo_copy import copy_repo

from xmbench.codehash import closure

CONFIG = ["--configfile", ".test/config.yaml", "--config", "results_dir=results/t", "fractions=[0.5, 1.0]",
          "methods=[scratch, crosspoint, simipu]", "tasks=[segmentation, detection]"]


# CLAP and the two ablations composed onto it (methods/clap_*/method.yaml `base: clap`, importing its code)
CLAP_METHODS = ("clap", "clap_uniform", "clap_noproto")
CLAP_CONFIG = ["--configfile", ".test/config.yaml", "--config", "results_dir=results/c", "fractions=[1.0]",
               f"methods=[crosspoint, {', '.join(CLAP_METHODS)}]", "tasks=[segmentation]"]


def _snakemake(repo: Path, *args: str, config: list[str] = CONFIG) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/local", *config, *args],
                         cwd=repo, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def planned(repo: Path, config: list[str] = CONFIG) -> set[tuple[str, str]]:
    """(rule, output) of every job a dry run would run."""
    text = _snakemake(repo, "-n", config=config).stdout
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        out = re.search(r"^\s+output: (\S+?)(?:,|$)", block, re.M)
        if rule and out:
            jobs.add((rule.group(1), out.group(1)))
    return jobs


def _touch_everything(repo: Path, config: list[str]) -> Path:
    summary = _snakemake(repo, "--detailed-summary", config=config).stdout.splitlines()
    for row in summary[1:]:
        out, _, rule = row.split("\t")[:3]
        path = repo / out
        if rule == "generate_dataset":
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    _snakemake(repo, "--touch", "-F", "--no-hooks", config=config)
    assert planned(repo, config) == set(), "a touched DAG must plan nothing"
    return repo


@pytest.fixture(scope="module")
def up_to_date_copy(tmp_path_factory):
    return _touch_everything(copy_repo(tmp_path_factory.mktemp("rerun") / "repo"), CONFIG)


@pytest.fixture
def repo(up_to_date_copy):
    """The up-to-date copy; every edit a test makes is undone afterwards."""
    saved = {}

    def edit(rel: str):
        path = up_to_date_copy / rel
        saved.setdefault(path, path.read_bytes())
        path.write_text(path.read_text() + "\n# edited by the test\n")

    yield up_to_date_copy, edit
    for path, data in saved.items():
        path.write_bytes(data)
    assert planned(up_to_date_copy) == set()


def _methods(jobs, rule):
    return {m for r, out in jobs if r == rule for m in ("scratch", "crosspoint", "simipu") if f"/{m}/" in out}


def test_the_copy_imports_its_own_code(up_to_date_copy):
    out = subprocess.run([sys.executable, "-c", "import xmbench; print(xmbench.__file__)"], cwd=up_to_date_copy,
                         capture_output=True, text=True).stdout
    assert out.strip().startswith(str(up_to_date_copy))


def test_editing_one_method_plans_that_methods_jobs_only(repo):
    root, edit = repo
    edit("methods/crosspoint/method.py")
    jobs = planned(root)
    assert _methods(jobs, "pretrain") == {"crosspoint"}
    assert _methods(jobs, "finetune") == {"crosspoint"}
    assert len([j for j in jobs if j[0] == "finetune"]) == 4  # 2 tasks x 2 fractions
    assert {r for r, _ in jobs} == {"pretrain", "finetune", "leaderboard"}


def test_editing_the_lidar_backbone_replans_everything_that_used_it(repo):
    root, edit = repo
    edit("xmbench/models/voxel_backbone.py")
    jobs = planned(root)
    assert _methods(jobs, "pretrain") == {"crosspoint", "simipu"}
    assert len([j for j in jobs if j[0] == "finetune"]) == 12  # every cell: scratch's too
    assert not {r for r, _ in jobs} & {"generate_dataset", "build_index", "label_split"}


def test_editing_an_engine_replans_its_tasks_cells_only(repo):
    root, edit = repo
    edit("downstream/segmentation/native.py")
    jobs = planned(root)
    assert {r for r, _ in jobs} == {"finetune", "leaderboard"}
    cells = [out for r, out in jobs if r == "finetune"]
    assert len(cells) == 6 and all("/segmentation/" in c for c in cells)


def test_a_module_a_method_imports_is_followed(repo):
    """A module only SimIPU imports (methods/simipu/matching.py, today) re-runs SimIPU alone: the import finds it."""
    root, edit = repo
    others = [*(root / "methods" / "crosspoint").rglob("*.py"), *(root / "downstream").rglob("*.py"),
              root / "xmbench" / "finetune.py"]
    own = set(closure(list((root / "methods" / "simipu").rglob("*.py")), root)) - set(closure(others, root))
    own -= set((root / "methods" / "simipu").glob("method.py"))
    assert own, "SimIPU imports no module of its own any more; pick another method for this test"
    edit(str(sorted(own)[0].relative_to(root)))
    jobs = planned(root)
    assert _methods(jobs, "pretrain") == {"simipu"} and _methods(jobs, "finetune") == {"simipu"}


def test_editing_an_error_message_replans_nothing(repo):
    root, edit = repo
    edit("xmbench/errors.py")
    assert planned(root) == set()


@pytest.fixture(scope="module")
def clap_copy(tmp_path_factory):
    """An up-to-date copy planning CLAP, its two ablations and CrossPoint; every edit is undone afterwards."""
    repo = _touch_everything(copy_repo(tmp_path_factory.mktemp("rerun_clap") / "repo"), CLAP_CONFIG)
    saved = {}

    def edit(rel: str, old: str | None = None, new: str | None = None):
        path = repo / rel
        saved.setdefault(path, path.read_bytes())
        text = path.read_text()
        assert old is None or text.count(old) == 1, f"{rel}: '{old}' is not there once"
        path.write_text(text.replace(old, new) if old is not None else text + "\n# edited by the test\n")

    yield repo, edit, saved


def _clap_jobs(jobs, rule):
    return {m for r, out in jobs if r == rule for m in ("crosspoint", *CLAP_METHODS) if f"/{m}/" in out}


def _undo(saved, repo):
    for path, data in saved.items():
        path.write_bytes(data)
    saved.clear()
    assert planned(repo, CLAP_CONFIG) == set()


def test_editing_clap_private_code_replans_clap_and_its_ablations(clap_copy):
    """rendering.py lives in methods/clap/ and the ablations import CLAP: the import walk reaches it
    from all three folders, and from no other method's."""
    repo, edit, saved = clap_copy
    try:
        edit("methods/clap/rendering.py")
        jobs = planned(repo, CLAP_CONFIG)
        assert _clap_jobs(jobs, "pretrain") == set(CLAP_METHODS)
        assert _clap_jobs(jobs, "finetune") == set(CLAP_METHODS)
    finally:
        _undo(saved, repo)


def test_a_value_in_the_base_yaml_replans_the_methods_composed_on_it(clap_copy):
    """The pretrain rule hashes the composed spec, so the ablations' jobs follow a change to CLAP's
    yaml; a comment there changes no spec and re-runs nothing."""
    repo, edit, saved = clap_copy
    try:
        edit("methods/clap/method.yaml", "w_rgb: {value: 0.1,", "w_rgb: {value: 0.2,")
        jobs = planned(repo, CLAP_CONFIG)
        assert _clap_jobs(jobs, "pretrain") == set(CLAP_METHODS)
        _undo(saved, repo)
        edit("methods/clap/method.yaml")
        assert planned(repo, CLAP_CONFIG) == set()
        edit("methods/clap_noproto/method.yaml", "display_name: CLAP (no prototypes)",
             "display_name: CLAP (no prototypes)\nschedule: {epochs: {value: 6, source: \"test override\"}}")
        assert _clap_jobs(planned(repo, CLAP_CONFIG), "pretrain") == {"clap_noproto"}
    finally:
        _undo(saved, repo)
