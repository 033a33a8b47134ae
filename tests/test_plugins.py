"""Method and task folders: schema validation that names the file and the field; fair recipes."""
import inspect

import pytest
import yaml

from xmbench.config import check_config
from xmbench.errors import BenchError
from xmbench.methods import discover, load_method
from xmbench.tasks import DOWNSTREAM_DIR as REPO_DOWNSTREAM, load_task


def test_shipped_methods_validate_and_cite_every_hyperparameter():
    assert {"scratch", "crosspoint"} <= set(discover())
    for name in discover():
        spec = load_method(name)
        if spec.pretrains:
            assert spec.load_class() is not None
            for key, entry in spec.spec["hparams"].items():
                assert len(entry["source"]) > 5, key
            assert spec.spec["deviations"], name


def _write(tmp_path, spec):
    folder = tmp_path / "methods" / spec.get("name", "bad")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "method.yaml").write_text(yaml.safe_dump(spec))
    return folder / "method.yaml"


@pytest.mark.parametrize("mutate,field", [
    (lambda s: s["hparams"]["temperature"].pop("source"), "hparams.temperature"),
    (lambda s: s["optimizer"].update(name="lbfgs"), "optimizer.name"),
    (lambda s: s.pop("optimizer"), "<top level>"),
    (lambda s: s["resources"].pop("gpus"), "resources"),
    (lambda s: s.update(colour="blue"), "<top level>"),
])
def test_invalid_method_yaml_names_file_and_field(tmp_path, mutate, field):
    spec = load_method("crosspoint").spec
    spec = yaml.safe_load(yaml.safe_dump(spec)) | {"name": "bad"}
    mutate(spec)
    path = _write(tmp_path, spec)
    with pytest.raises(BenchError) as err:
        load_method("bad", tmp_path / "methods")
    msg = str(err.value)
    assert msg.startswith(f"{path}: field '{field}'") and "\n" not in msg


def test_method_name_must_match_folder(tmp_path):
    spec = yaml.safe_load(yaml.safe_dump(load_method("scratch").spec))
    folder = tmp_path / "methods" / "other"
    folder.mkdir(parents=True)
    (folder / "method.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(BenchError, match="field 'name': 'scratch' differs from its folder name 'other'"):
        load_method("other", tmp_path / "methods")


def test_unknown_method_or_task_in_config(test_config):
    cfg = yaml.safe_load(yaml.safe_dump(test_config))
    cfg["methods"] = ["scratch", "nosuchmethod"]
    with pytest.raises(BenchError, match="field 'methods': unknown method 'nosuchmethod'"):
        check_config(cfg, "cfg.yaml")
    cfg["methods"] = ["scratch"]
    cfg["tasks"] = ["flying"]
    with pytest.raises(BenchError, match="field 'tasks': unknown task 'flying'"):
        check_config(cfg, "cfg.yaml")
    cfg["tasks"] = ["segmentation"]
    cfg["fractions"] = [0.0]
    with pytest.raises(BenchError, match="cfg.yaml: field 'fractions.0'"):
        check_config(cfg, "cfg.yaml")


def test_recipe_depends_on_dataset_profile_and_fraction_only():
    task = load_task("segmentation")
    params = list(inspect.signature(task.recipe).parameters)
    assert params == ["profile", "fraction"]
    small, full = task.recipe("small", 0.1), task.recipe("small", 1.0)
    assert full["iterations"] == task.spec["recipes"]["small"]["iterations_full"]
    assert small["iterations"] < full["iterations"]
    assert small["iterations"] >= task.spec["recipes"]["small"]["iterations_min"]
    with pytest.raises(BenchError, match="no recipe 'huge'"):
        task.recipe("huge", 1.0)


def test_settings_hash_follows_every_settings_file_of_the_task(tmp_path):
    """The finetune rule carries this hash, so editing native.yaml or a template re-runs the cells."""
    import shutil

    shutil.copytree(REPO_DOWNSTREAM / "detection", tmp_path / "detection")
    task = load_task("detection", tmp_path)
    before = task.settings_hash()
    assert before == load_task("detection", tmp_path).settings_hash()
    native = tmp_path / "detection" / "native.yaml"
    native.write_text(native.read_text().replace("score_thresh: 0.1", "score_thresh: 0.2", 1))
    after_native = task.settings_hash()
    template = tmp_path / "detection" / "openpcdet" / "nuscenes_centerpoint.yaml"
    template.write_text(template.read_text() + "\n# edited\n")
    assert len({before, after_native, task.settings_hash()}) == 3
    (tmp_path / "detection" / "native.py").write_text("# code is not a settings file\n")
    assert task.settings_hash() == load_task("detection", tmp_path).settings_hash()


# ------------------------------------------------------------------ composition (`base:`)
def _methods_copy(tmp_path):
    """The repository's methods/ under tmp_path: composition tests edit a base without touching the tree."""
    import shutil

    from xmbench.methods import METHODS_DIR

    dest = tmp_path / "methods"
    shutil.copytree(METHODS_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return dest


def _derived(methods_dir, name, patch):
    folder = methods_dir / name
    folder.mkdir()
    (folder / "method.yaml").write_text(yaml.safe_dump({"base": "crosspoint", "name": name, **patch}))
    return folder / "method.yaml"


def test_a_derived_yaml_is_its_base_merged_under_its_overrides(tmp_path):
    methods_dir = _methods_copy(tmp_path)
    base = load_method("crosspoint", methods_dir).spec
    _derived(methods_dir, "cp_ablation", {
        "hparams": {"temperature": {"value": 0.2, "source": "gap: benchmark choice (test)"}, "jitter_clip": None},
        "deviations": [{"what": "only this", "why": "a list replaces the base's"}],
        "resources": {"hours": 1},
    })
    spec = load_method("cp_ablation", methods_dir)
    assert spec.files == (methods_dir / "cp_ablation" / "method.yaml", methods_dir / "crosspoint" / "method.yaml")
    assert spec.spec["hparams"]["temperature"] == {"value": 0.2, "source": "gap: benchmark choice (test)"}
    assert "jitter_clip" in base["hparams"] and "jitter_clip" not in spec.spec["hparams"]  # null removes
    assert spec.spec["deviations"] == [{"what": "only this", "why": "a list replaces the base's"}]
    assert spec.spec["resources"] == {**base["resources"], "hours": 1}  # mappings merge key by key
    assert spec.spec["optimizer"] == base["optimizer"] and spec.spec["entry"] == base["entry"]
    assert "base" not in spec.spec

    # an edit to the base reaches the derived spec (and with it the hash the pretrain rule carries)
    path = methods_dir / "crosspoint" / "method.yaml"
    path.write_text(path.read_text().replace("weight_decay: {value: 1.0e-6", "weight_decay: {value: 2.0e-6", 1))
    assert load_method("cp_ablation", methods_dir).spec["optimizer"]["weight_decay"]["value"] == 2.0e-6


def test_an_override_without_its_own_source_is_refused(tmp_path):
    """Merged onto the base's entry, a bare value would be cited by a source that never gave it."""
    methods_dir = _methods_copy(tmp_path)
    path = _derived(methods_dir, "cp_bad", {"optimizer": {"lr": {"value": 3.0e-3}}})
    with pytest.raises(BenchError) as err:
        load_method("cp_bad", methods_dir)
    assert str(err.value) == f"{path}: field 'optimizer.lr': an override of the base's value needs its own 'source'"


def test_a_composed_spec_is_validated_naming_the_derived_file(tmp_path):
    methods_dir = _methods_copy(tmp_path)
    path = _derived(methods_dir, "cp_noopt", {"optimizer": None})
    with pytest.raises(BenchError) as err:
        load_method("cp_noopt", methods_dir)
    assert str(err.value).startswith(f"{path}: field '<top level>'")


def test_an_unknown_or_circular_base_is_named(tmp_path):
    methods_dir = _methods_copy(tmp_path)
    path = _derived(methods_dir, "cp_orphan", {})
    path.write_text(path.read_text().replace("base: crosspoint", "base: nosuch"))
    with pytest.raises(BenchError, match=r"cp_orphan/method.yaml: field 'base': no method 'nosuch'"):
        load_method("cp_orphan", methods_dir)
    for a, b in (("loop_a", "loop_b"), ("loop_b", "loop_a")):
        (methods_dir / a).mkdir()
        (methods_dir / a / "method.yaml").write_text(f"base: {b}\nname: {a}\n")
    with pytest.raises(BenchError, match="field 'base': the bases form a cycle"):
        load_method("loop_a", methods_dir)


def test_discover_counts_folders_with_a_method_yaml_only(tmp_path):
    """methods/ is a package now: its __init__.py and __pycache__ sit beside the method folders."""
    methods_dir = _methods_copy(tmp_path)
    (methods_dir / "__init__.py").write_text("")
    (methods_dir / "__pycache__").mkdir()
    (methods_dir / "__pycache__" / "x.pyc").write_bytes(b"")
    (methods_dir / "notes").mkdir()
    with_yaml = sorted(p.name for p in methods_dir.iterdir() if (p / "method.yaml").is_file())
    assert discover(methods_dir) == discover() == with_yaml
    assert "__pycache__" not in discover(methods_dir) and "clap_uniform" in discover(methods_dir)
