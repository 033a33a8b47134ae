"""CITATION.cff: valid CFF 1.2.0 that cites every method the benchmark runs, so a new method cannot
enter the leaderboards uncited."""
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def test_citation_cites_every_method_paper_and_the_datasets():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["title"] and cff["message"] and cff["authors"]
    refs = cff["references"]
    for r in refs:  # what CFF 1.2.0 requires of a reference
        assert r["type"] and r["title"] and r["authors"], r
        assert all("name" in a or "family-names" in a for a in r["authors"]), r["title"]
    titles = {r["title"] for r in refs}
    from xmbench.methods import discover, load_method

    for method in discover():  # the merged spec: an ablation inherits its base method's paper
        paper = load_method(method).spec["paper"]
        if paper["authors"] != "-":  # scratch has no paper
            assert paper["title"] in titles, f"methods/{method}/method.yaml: its paper is not in CITATION.cff"
    for needed in ("nuScenes: A Multimodal Dataset for Autonomous Driving",
                   "Scalability in Perception for Autonomous Driving: Waymo Open Dataset",
                   "UniPAD: A Universal Pre-training Paradigm for Autonomous Driving",
                   "OpenPCDet: An Open-source Toolbox for 3D Object Detection from Point Clouds",
                   "Image-to-Lidar Self-Supervised Distillation for Autonomous Driving Data"):
        assert needed in titles
    years = {r["title"].split(":")[0]: r["year"] for r in refs}
    assert years["CrossPoint"] == 2022 and years["SimIPU"] == 2022 and years["CLAP"] == 2024
    assert any("2412.03059" in i["value"] for r in refs for i in r.get("identifiers", []))
