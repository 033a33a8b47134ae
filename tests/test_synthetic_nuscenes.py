"""The generated dataset must be indistinguishable from nuScenes v1.0-mini to the devkit.

Generated once per module (3 keyframes per scene, small images) to keep the suite fast; a second,
tiny configuration (with sweeps) checks determinism and the non-keyframe chain.
"""
import colorsys
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nuscenes import NuScenes
from nuscenes.eval.detection.utils import category_to_detection_name
from nuscenes.eval.lidarseg.utils import LidarsegClassMapper
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import BoxVisibility, points_in_box, view_points
from nuscenes.utils.splits import create_splits_scenes

from xmbench.data.synthetic import generate_nuscenes
from xmbench.data.synthetic.nuscenes_writer import CLASS_TO_CATEGORY
from xmbench.data.synthetic.scene_sim import OBJECT_CLASSES

REAL = Path('/work/shared/real-samples/nuscenes')
OFFICIAL_LIDARSEG = [
    'noise', 'animal', 'human.pedestrian.adult', 'human.pedestrian.child', 'human.pedestrian.construction_worker',
    'human.pedestrian.personal_mobility', 'human.pedestrian.police_officer', 'human.pedestrian.stroller',
    'human.pedestrian.wheelchair', 'movable_object.barrier', 'movable_object.debris',
    'movable_object.pushable_pullable', 'movable_object.trafficcone', 'static_object.bicycle_rack', 'vehicle.bicycle',
    'vehicle.bus.bendy', 'vehicle.bus.rigid', 'vehicle.car', 'vehicle.construction', 'vehicle.emergency.ambulance',
    'vehicle.emergency.police', 'vehicle.motorcycle', 'vehicle.trailer', 'vehicle.truck', 'flat.driveable_surface',
    'flat.other', 'flat.sidewalk', 'flat.terrain', 'static.manmade', 'static.other', 'static.vegetation',
    'vehicle.ego']
TABLES = ['attribute', 'calibrated_sensor', 'category', 'ego_pose', 'instance', 'log', 'map', 'sample',
          'sample_annotation', 'sample_data', 'scene', 'sensor', 'visibility', 'lidarseg']
IMAGE_SIZE = (640, 360)


@pytest.fixture(scope='module')
def dataroot(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('synthetic') / 'nuscenes'
    return generate_nuscenes(root, seed=0, keyframes_per_scene=3, image_size=IMAGE_SIZE)


@pytest.fixture(scope='module')
def nusc(dataroot) -> NuScenes:
    return NuScenes(version='v1.0-mini', dataroot=str(dataroot), verbose=False)


def _lidar(nusc, sample):
    sd_token = sample['data']['LIDAR_TOP']
    path, boxes, _ = nusc.get_sample_data(sd_token)
    labels = np.fromfile(Path(nusc.dataroot) / nusc.get('lidarseg', sd_token)['filename'], dtype=np.uint8)
    return LidarPointCloud.from_file(path), boxes, labels


def test_devkit_loads_every_table(nusc, dataroot):
    for name in TABLES:
        rows = json.loads((dataroot / 'v1.0-mini' / f'{name}.json').read_text())
        assert rows, name
    assert len(nusc.scene) == 10 and len(nusc.log) == 10
    assert len(nusc.sample) == 30
    assert {s['channel'] for s in nusc.sensor} == {
        'LIDAR_TOP', 'CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT', 'CAM_BACK_RIGHT'}
    for sample in nusc.sample:
        assert len(sample['data']) == 7
    for sd in nusc.sample_data:
        assert (dataroot / sd['filename']).is_file()
        assert len(sd['token']) == 32 and int(sd['token'], 16) >= 0
    for record in nusc.map:
        assert (dataroot / record['filename']).is_file()
    assert {v['token']: v['level'] for v in nusc.visibility} == {
        '1': 'v0-40', '2': 'v40-60', '3': 'v60-80', '4': 'v80-100'}


def test_lidarseg_index_is_official(nusc):
    assert len(nusc.lidarseg) == len(nusc.sample)
    assert nusc.lidarseg_idx2name_mapping == dict(enumerate(OFFICIAL_LIDARSEG))
    mapper = LidarsegClassMapper(nusc)
    assert mapper.fine_idx_2_coarse_idx_mapping[24] == 11  # driveable_surface
    # The real sample's labels are in the same index space (car, road, manmade, vegetation, ego).
    real = np.fromfile(REAL / '5f6c1e0a0c3b444b97e78d2aa3fa34d2_lidarseg.bin', dtype=np.uint8)
    assert {nusc.lidarseg_idx2name_mapping[i] for i in set(real.tolist())} <= set(OFFICIAL_LIDARSEG)
    for record in nusc.lidarseg:
        assert record['token'] == record['sample_data_token']


def test_mini_splits_cover_exactly_the_ten_scenes(nusc):
    splits = create_splits_scenes()
    names = {s['name'] for s in nusc.scene}
    assert set(splits['mini_train']) | set(splits['mini_val']) == names
    assert len(splits['mini_train']) == 8 and len(splits['mini_val']) == 2


def test_num_lidar_pts_is_points_in_box(nusc):
    checked = 0
    for sample in nusc.sample:
        pc, boxes, _ = _lidar(nusc, sample)
        assert len(boxes) == len(sample['anns'])
        for box in boxes:
            ann = nusc.get('sample_annotation', box.token)
            assert int(points_in_box(box, pc.points[:3]).sum()) == ann['num_lidar_pts'] >= 1
            checked += 1
    assert checked > 100


def test_lidarseg_labels_inside_boxes_are_the_box_class(nusc):
    for sample in nusc.sample:
        pc, boxes, labels = _lidar(nusc, sample)
        assert len(labels) == pc.points.shape[1]
        inside_any = np.zeros(len(labels), dtype=bool)
        for box in boxes:
            mask = points_in_box(box, pc.points[:3])
            inside_any |= mask
            assert np.all(labels[mask] == nusc.lidarseg_name2idx_mapping[box.name])
        stuff = labels[~inside_any]
        assert np.isin(stuff, [24, 26, 27, 28, 29, 30, 31]).mean() > 0.97


def test_pcd_bin_layout_matches_real_nuscenes(nusc, dataroot):
    real = [LidarPointCloud.from_file(str(p)) for p in sorted(REAL.glob('*.pcd.bin'))]
    ours = [LidarPointCloud.from_file(nusc.get_sample_data_path(s['data']['LIDAR_TOP'])) for s in nusc.sample[:5]]
    for pc in real + ours:
        assert pc.points.shape[0] == 4 and pc.points.dtype == np.float32
    for sample in nusc.sample[:5]:
        path = Path(nusc.get_sample_data_path(sample['data']['LIDAR_TOP']))
        raw = np.fromfile(path, dtype=np.float32)
        assert raw.size % 5 == 0
        cloud = raw.reshape(-1, 5)
        assert 20000 < len(cloud) < 40000
        ring = cloud[:, 4]
        assert np.all(ring == np.round(ring)) and ring.min() == 0 and ring.max() == 31
        intensity = cloud[:, 3]
        assert np.all(intensity == np.round(intensity)) and 0 <= intensity.min() and intensity.max() <= 255
        # As in the real sweep: low rings see the ground close by, the ring index rises with elevation.
        low, high = cloud[ring == 0], cloud[ring == 31]
        assert np.median(low[:, 2]) < -1.0 and np.median(np.linalg.norm(low[:, :2], axis=1)) < 6
        assert np.median(high[:, 2]) > np.median(low[:, 2])
    real_sweep = np.fromfile(next(REAL.glob('n008*.pcd.bin')), dtype=np.float32).reshape(-1, 5)
    assert set(np.unique(real_sweep[:, 4]).tolist()) == set(np.unique(cloud[:, 4]).tolist())


def test_at_least_five_detection_classes(nusc):
    names = {category_to_detection_name(a['category_name']) for a in nusc.sample_annotation}
    names.discard(None)
    assert len(names) >= 5, names


def _hue(rgb):
    h, s, v = colorsys.rgb_to_hsv(*(np.asarray(rgb, dtype=np.float64) / 255.0))
    return h, s, v


def _nearest_class(rgb):
    h, s, v = _hue(rgb)
    if s < 0.35 or v < 0.15:
        return None
    dist = {name: min(abs(h - _hue(c.colour)[0]), 1 - abs(h - _hue(c.colour)[0]))
            for name, c in OBJECT_CLASSES.items()}
    return min(dist, key=dist.get)


def test_projected_box_centres_land_on_their_class_colour(nusc):
    """Devkit calibrations + view_points put each clearly visible box's centre on its own pixels."""
    category_to_class = {v: k for k, v in CLASS_TO_CATEGORY.items()}
    checked = matched = 0
    for sample in nusc.sample:
        for channel in ['CAM_FRONT', 'CAM_FRONT_LEFT', 'CAM_FRONT_RIGHT', 'CAM_BACK', 'CAM_BACK_LEFT',
                        'CAM_BACK_RIGHT']:
            path, boxes, intrinsic = nusc.get_sample_data(sample['data'][channel], box_vis_level=BoxVisibility.ALL)
            image = np.asarray(Image.open(path).convert('RGB'))
            for box in boxes:
                ann = nusc.get('sample_annotation', box.token)
                if ann['visibility_token'] != '4' or box.center[2] > 30:
                    continue
                u, v = view_points(box.center[:, None], intrinsic, normalize=True)[:2, 0]
                corners = view_points(box.corners(), intrinsic, normalize=True)[:2]
                if np.ptp(corners[0]) < 12 or np.ptp(corners[1]) < 12:
                    continue
                checked += 1
                pixel = image[int(round(v)), int(round(u))]
                matched += _nearest_class(pixel) == category_to_class[box.name]
    assert checked > 50
    assert matched / checked > 0.9, (matched, checked)


def test_ego_moves_along_each_scene(nusc):
    for scene in nusc.scene:
        positions, stamps = [], []
        token = scene['first_sample_token']
        while token:
            sample = nusc.get('sample', token)
            sd = nusc.get('sample_data', sample['data']['LIDAR_TOP'])
            positions.append(nusc.get('ego_pose', sd['ego_pose_token'])['translation'])
            stamps.append(sample['timestamp'])
            token = sample['next']
        assert len(positions) == scene['nbr_samples'] == 3
        steps = np.linalg.norm(np.diff(np.array(positions), axis=0), axis=1)
        assert np.all((steps > 2.0) & (steps < 4.5)), steps  # 5-8 m/s over 0.5 s
        assert np.all(np.diff(stamps) == 500_000)


def test_moving_instances_have_finite_velocities(nusc):
    moving = {a['token'] for a in nusc.attribute if a['name'] in ('vehicle.moving', 'pedestrian.moving')}
    parked = {a['token'] for a in nusc.attribute if a['name'] == 'vehicle.parked'}
    n_moving = 0
    for ann in nusc.sample_annotation:
        if nusc.get('instance', ann['instance_token'])['nbr_annotations'] < 2:
            continue
        velocity = nusc.box_velocity(ann['token'])
        assert np.all(np.isfinite(velocity))
        if moving & set(ann['attribute_tokens']):
            n_moving += 1
            assert np.linalg.norm(velocity[:2]) > 0.5
        if parked & set(ann['attribute_tokens']):
            assert np.linalg.norm(velocity[:2]) < 1e-6
    assert n_moving > 10


def test_instances_and_annotation_chains_are_consistent(nusc):
    for instance in nusc.instance:
        token, count = instance['first_annotation_token'], 0
        last = None
        while token:
            ann = nusc.get('sample_annotation', token)
            assert ann['instance_token'] == instance['token']
            last, token, count = ann, ann['next'], count + 1
        assert count == instance['nbr_annotations'] and last['token'] == instance['last_annotation_token']


def test_detection_eval_scores_ground_truth_perfectly(nusc, tmp_path):
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval
    val = set(create_splits_scenes()['mini_val'])
    results = {}
    for sample in nusc.sample:
        if nusc.get('scene', sample['scene_token'])['name'] not in val:
            continue
        results[sample['token']] = []
        for token in sample['anns']:
            ann = nusc.get('sample_annotation', token)
            name = category_to_detection_name(ann['category_name'])
            if name is None:
                continue
            attrs = [nusc.get('attribute', t)['name'] for t in ann['attribute_tokens']]
            results[sample['token']].append({
                'sample_token': sample['token'], 'translation': ann['translation'], 'size': ann['size'],
                'rotation': ann['rotation'], 'velocity': list(nusc.box_velocity(token)[:2].tolist()),
                'detection_name': name, 'detection_score': 1.0, 'attribute_name': attrs[0] if attrs else ''})
    for boxes in results.values():
        for box in boxes:
            box['velocity'] = [0.0 if not np.isfinite(v) else v for v in box['velocity']]
    path = tmp_path / 'results.json'
    path.write_text(json.dumps({'meta': {'use_camera': False, 'use_lidar': True, 'use_radar': False,
                                         'use_map': False, 'use_external': False}, 'results': results}))
    evaluator = DetectionEval(nusc, config_factory('detection_cvpr_2019'), str(path), eval_set='mini_val',
                              output_dir=str(tmp_path), verbose=False)
    metrics, _ = evaluator.evaluate()
    present = {box['detection_name'] for boxes in results.values() for box in boxes}
    aps = metrics.serialize()['mean_dist_aps']
    assert len(present) >= 5
    # Classes with no ground truth (trailer, construction vehicle) score 0; every present one is perfect.
    assert all(aps[name] > 0.99 for name in present), aps


@pytest.fixture(scope='module')
def tiny_pair(tmp_path_factory):
    base = tmp_path_factory.mktemp('tiny')
    kwargs = dict(keyframes_per_scene=2, image_size=(160, 90), azimuth_steps=180, sweeps_per_keyframe=2)
    a = generate_nuscenes(base / 'a', seed=1, **kwargs)
    b = generate_nuscenes(base / 'b', seed=1, **kwargs)
    c = generate_nuscenes(base / 'c', seed=2, **kwargs)
    return a, b, c


def _digests(root: Path):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tiny_pair):
    a, b, c = tiny_pair
    da, db, dc = _digests(a), _digests(b), _digests(c)
    assert da == db
    assert set(da.values()) != set(dc.values())
    assert da['v1.0-mini/sample_annotation.json'] != dc['v1.0-mini/sample_annotation.json']
    lidar_a = sorted(k for k in da if k.startswith('samples/LIDAR_TOP'))
    assert [da[k] for k in lidar_a] != [dc.get(k) for k in lidar_a]


def test_sweeps_are_chained_between_keyframes(tiny_pair):
    a, _, _ = tiny_pair
    nusc = NuScenes(version='v1.0-mini', dataroot=str(a), verbose=False)
    sweeps = [sd for sd in nusc.sample_data if not sd['is_key_frame']]
    assert len(sweeps) == 10 * 2 and all(sd['filename'].startswith('sweeps/LIDAR_TOP/') for sd in sweeps)
    for sample in nusc.sample:
        if not sample['prev']:
            continue
        sd = nusc.get('sample_data', sample['data']['LIDAR_TOP'])
        chain = []
        while sd['prev']:
            sd = nusc.get('sample_data', sd['prev'])
            if sd['is_key_frame']:
                break
            chain.append(sd)
        assert len(chain) == 2 and all(s['sample_token'] == sample['token'] for s in chain)
        assert sd['sample_token'] == sample['prev']
        pc = LidarPointCloud.from_file(nusc.get_sample_data_path(chain[0]['token']))
        assert pc.points.shape[1] > 1000
        nusc.get_boxes(chain[0]['token'])  # interpolates annotations for a sweep


def test_refuses_to_replace_a_foreign_folder(tmp_path, tiny_pair):
    foreign = tmp_path / 'not_a_dataset'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('precious')
    with pytest.raises(FileExistsError):
        generate_nuscenes(foreign, seed=0, keyframes_per_scene=2, image_size=(160, 90), azimuth_steps=90)
    assert (foreign / 'keep.txt').read_text() == 'precious'
    assert not any(p.name.startswith('.not_a_dataset') for p in tmp_path.iterdir())


def test_regenerating_replaces_a_previous_output(tmp_path):
    root = tmp_path / 'ds'
    kwargs = dict(keyframes_per_scene=2, image_size=(160, 90), azimuth_steps=90)
    generate_nuscenes(root, seed=3, **kwargs)
    before = _digests(root)
    generate_nuscenes(root, seed=4, **kwargs)
    assert _digests(root) != before
    assert NuScenes(version='v1.0-mini', dataroot=str(root), verbose=False).scene
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ds']
