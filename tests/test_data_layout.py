"""xmbench/data/ by dataset and by interpreter: the main environment never imports a module that
only the Waymo (TensorFlow) environment can run, and the Waymo side never imports torch or the
devkit, so each interpreter imports only what it has. Calls across go through run_module."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
XM = REPO / "xmbench"
# what runs in the Waymo environment: python -m xmbench.data.<module> through run_module, and the
# synthetic Waymo writer's own modules (synthetic/waymo_*.py) that only it imports
TF_SIDE = (sorted(p for p in (XM / "data" / "waymo" / "tf").glob("*.py") if p.name != "__init__.py")
           + sorted((XM / "data" / "synthetic").glob("waymo_*.py")))


def _imported(path: Path) -> set[str]:
    """Dotted names of every import in ``path`` (lazy ones included), relative ones resolved."""
    pkg = list(path.relative_to(REPO).parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = pkg[:len(pkg) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out |= {mod} | {f"{mod}.{a.name}" for a in node.names}
    return out


def test_the_main_side_never_imports_a_waymo_environment_module():
    tf_names = {".".join(p.relative_to(REPO).with_suffix("").parts) for p in TF_SIDE}
    main_side = [p for p in XM.rglob("*.py") if p not in TF_SIDE]
    offenders = {str(p.relative_to(REPO)): sorted(_imported(p) & tf_names) for p in main_side}
    assert not {k: v for k, v in offenders.items() if v}, offenders
    assert len(tf_names) == 9 and len(main_side) > 50


def test_the_waymo_side_imports_neither_torch_nor_the_devkit_nor_main_side_data():
    allowed_project = {"xmbench.atomic", "xmbench.errors", "xmbench.data.synthetic.scene_sim",
                       "xmbench.data.synthetic", "xmbench.data.waymo.tf.convert", "xmbench.data.waymo.tf"}
    for path in TF_SIDE:
        names = _imported(path)
        third = {n.split(".")[0] for n in names if not n.startswith("xmbench")}
        assert not third & {"torch", "nuscenes", "spconv", "pandas"}, (path, third)
        project = {n for n in names if n.startswith("xmbench")}
        stray = {n for n in project if not any(n == a or n.startswith(a + ".") for a in allowed_project)}
        assert not stray, (path, stray)


def test_each_dataset_keeps_its_evaluation():
    for rel in ("nuscenes/index.py", "nuscenes/tables.py", "nuscenes/detection_eval.py",
                "nuscenes/lidarseg_eval.py", "waymo/env.py", "waymo/detection_eval.py", "waymo/tf/convert.py",
                "waymo/tf/metrics.py", "synthetic/scene_sim.py", "synthetic/nuscenes_writer.py",
                "synthetic/waymo_writer.py"):
        assert (XM / "data" / rel).is_file(), rel
    assert not list((XM / "detection").glob("*_eval.py"))
