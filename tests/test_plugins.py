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
