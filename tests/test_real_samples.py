"""Readers on bytes recorded by a real car (shared/real-samples/nuscenes)."""
import numpy as np
import pytest

from xmbench.data.sensor_io import read_image, read_lidarseg, read_pcd_bin


def test_real_pcd_bin_layout(shared_dir):
    for name, n in [("n015-2018-08-02-17-16-37+0800__LIDAR_TOP__1533201470948018.pcd.bin", 40),
                    ("n008-2018-09-18-12-07-26-0400__LIDAR_TOP__1537287083900561.pcd.bin", 400)]:
        pts = read_pcd_bin(shared_dir / "real-samples" / "nuscenes" / name)
        assert pts.shape == (n, 5) and pts.dtype == np.float32
        ring = pts[:, 4]
        assert np.all(ring == np.round(ring)) and ring.min() >= 0 and ring.max() <= 31


def test_real_lidarseg_maps_to_devkit_classes(shared_dir):
    d = shared_dir / "real-samples" / "nuscenes"
    pts = read_pcd_bin(d / "n015-2018-08-02-17-16-37+0800__LIDAR_TOP__1533201470948018.pcd.bin")
    labels = read_lidarseg(d / "5f6c1e0a0c3b444b97e78d2aa3fa34d2_lidarseg.bin", len(pts))
    assert labels.max() <= 31
    assert {17, 24}.issubset(set(labels.tolist()))  # vehicle.car and flat.driveable_surface, as the README says
    with pytest.raises(Exception, match="labels for a cloud of 41 points"):
        read_lidarseg(d / "5f6c1e0a0c3b444b97e78d2aa3fa34d2_lidarseg.bin", 41)


def test_real_camera_image(shared_dir):
    img = read_image(shared_dir / "real-samples" / "nuscenes" /
                     "n015-2018-07-18-11-07-57+0800__CAM_BACK_LEFT__1531883530447423.jpg")
    assert img.size == (1600, 900) and img.mode == "RGB"


def test_bad_files_give_one_clear_error(tmp_path, shared_dir):
    from xmbench.errors import BenchError

    src = shared_dir / "real-samples" / "nuscenes" / "n015-2018-08-02-17-16-37+0800__LIDAR_TOP__1533201470948018.pcd.bin"
    cut = tmp_path / "cut.pcd.bin"
    cut.write_bytes(src.read_bytes()[:-6])
    with pytest.raises(BenchError, match=r"cut\.pcd\.bin: truncated \.pcd\.bin"):
        read_pcd_bin(cut)
    with pytest.raises(BenchError, match=r"missing\.pcd\.bin: LiDAR file missing"):
        read_pcd_bin(tmp_path / "missing.pcd.bin")
    with pytest.raises(BenchError, match=r"nope\.jpg: camera image missing"):
        read_image(tmp_path / "nope.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(BenchError, match=r"bad\.jpg: unreadable image"):
        read_image(tmp_path / "bad.jpg")
