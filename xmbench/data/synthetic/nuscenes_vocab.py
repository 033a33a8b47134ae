"""nuScenes' fixed vocabularies (lidarseg categories, attributes, visibility bins), how the
simulator's classes and surfaces map onto them, and the ten mini scenes being imitated.

Why apart: these are facts about nuScenes, not about writing files; the tests check the
simulator's classes against them and the writer only reads them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from .scene_sim import GroundZone, Surface

# The 32 nuScenes-lidarseg categories in their official index order (index = position).
CATEGORIES: Tuple[Tuple[str, str], ...] = (
    ('noise', 'Any lidar return that does not correspond to a physical object.'),
    ('animal', 'All animals, e.g. cats, rats, dogs, deer, birds.'),
    ('human.pedestrian.adult', 'Adult subcategory.'),
    ('human.pedestrian.child', 'Child subcategory.'),
    ('human.pedestrian.construction_worker', 'Construction worker.'),
    ('human.pedestrian.personal_mobility', 'A small electric or self-propelled vehicle ridden by a person.'),
    ('human.pedestrian.police_officer', 'Police officer.'),
    ('human.pedestrian.stroller', 'Strollers.'),
    ('human.pedestrian.wheelchair', 'Wheelchairs.'),
    ('movable_object.barrier', 'Temporary road barrier placed to redirect traffic.'),
    ('movable_object.debris', 'Movable object that is left on the driveable surface.'),
    ('movable_object.pushable_pullable', 'Objects that a pedestrian may push or pull.'),
    ('movable_object.trafficcone', 'All types of traffic cone.'),
    ('static_object.bicycle_rack', 'Area or device intended to park or secure bicycles.'),
    ('vehicle.bicycle', 'Human or electric powered 2-wheeled vehicle designed to travel at lower speeds.'),
    ('vehicle.bus.bendy', 'Bendy bus subcategory.'),
    ('vehicle.bus.rigid', 'Rigid bus subcategory.'),
    ('vehicle.car', 'Vehicle designed primarily for personal use.'),
    ('vehicle.construction', 'Vehicles primarily designed for construction.'),
    ('vehicle.emergency.ambulance', 'All types of ambulances.'),
    ('vehicle.emergency.police', 'All types of police vehicles.'),
    ('vehicle.motorcycle', 'Gasoline or electric powered 2-wheeled vehicle designed to move rapidly.'),
    ('vehicle.trailer', 'Any vehicle trailer.'),
    ('vehicle.truck', 'Vehicles primarily designed to haul cargo.'),
    ('flat.driveable_surface', 'Surfaces should be regarded with no concern of traffic rules.'),
    ('flat.other', 'All other forms of horizontal ground-level structures that do not belong to any other flat class.'),
    ('flat.sidewalk', 'Sidewalk, pedestrian walkways, bike paths, etc.'),
    ('flat.terrain', 'Natural horizontal surfaces such as ground level horizontal vegetation (< 20 cm tall), grass, '
                     'rolling hills, soil, sand and gravel.'),
    ('static.manmade', 'Includes man-made structures but not limited to: buildings, walls, guard rails, fences, '
                       'poles, drainages, hydrants, flags, banners, street signs, electric circuit boxes, traffic '
                       'lights, parking meters and stairs.'),
    ('static.other', 'Points in the background that are not distinguishable, or objects that do not match any of '
                     'the above labels.'),
    ('static.vegetation', 'Any vegetation in the frame that is higher than the ground, including bushes, plants, '
                          'potted plants, trees, etc.'),
    ('vehicle.ego', 'The vehicle on which the cameras, radar and lidar are mounted, that is sometimes visible at '
                    'the bottom of the image.'),
)
CATEGORY_INDEX = {name: i for i, (name, _) in enumerate(CATEGORIES)}

# Simulator class -> nuScenes category.
CLASS_TO_CATEGORY = {
    'car': 'vehicle.car', 'truck': 'vehicle.truck', 'bus': 'vehicle.bus.rigid',
    'pedestrian': 'human.pedestrian.adult', 'bicycle': 'vehicle.bicycle', 'motorcycle': 'vehicle.motorcycle',
    'barrier': 'movable_object.barrier', 'traffic_cone': 'movable_object.trafficcone',
}

ATTRIBUTES: Tuple[Tuple[str, str], ...] = (
    ('vehicle.moving', 'Vehicle is moving.'),
    ('vehicle.stopped', 'Vehicle, with a driver/rider in/on it, is currently stationary but has an intent to move.'),
    ('vehicle.parked', 'Vehicle is stationary (usually for longer duration) with no immediate intent to move.'),
    ('cycle.with_rider', 'There is a rider on the bicycle or motorcycle.'),
    ('cycle.without_rider', 'There is NO rider on the bicycle or motorcycle.'),
    ('pedestrian.sitting_lying_down', 'The human is sitting or lying down.'),
    ('pedestrian.standing', 'The human is standing.'),
    ('pedestrian.moving', 'The human is moving.'),
)

VISIBILITY: Tuple[Tuple[str, str, str], ...] = (
    ('1', 'v0-40', 'visibility of whole object is between 0 and 40%'),
    ('2', 'v40-60', 'visibility of whole object is between 40 and 60%'),
    ('3', 'v60-80', 'visibility of whole object is between 60 and 80%'),
    ('4', 'v80-100', 'visibility of whole object is between 80 and 100%'),
)

LIDARSEG_OF_SURFACE = {
    Surface.BUILDING: CATEGORY_INDEX['static.manmade'],
    Surface.POLE: CATEGORY_INDEX['static.other'],
    Surface.TREE: CATEGORY_INDEX['static.vegetation'],
    Surface.EGO: CATEGORY_INDEX['vehicle.ego'],
}
LIDARSEG_OF_GROUND = {
    GroundZone.ROAD: CATEGORY_INDEX['flat.driveable_surface'],
    GroundZone.SIDEWALK: CATEGORY_INDEX['flat.sidewalk'],
    GroundZone.TERRAIN: CATEGORY_INDEX['flat.terrain'],
}


@dataclass(frozen=True)
class SceneSpec:
    """One of the ten mini scenes: its name, where its log was 'recorded', and when."""

    name: str
    location: str
    vehicle: str
    log_start: str  # nuScenes log name suffix: YYYY-mm-dd-HH-MM-SS+zzzz


SCENES: Tuple[SceneSpec, ...] = (
    SceneSpec('scene-0061', 'singapore-onenorth', 'n015', '2018-07-24-11-22-45+0800'),
    SceneSpec('scene-0103', 'boston-seaport', 'n008', '2018-08-01-15-16-36-0400'),
    SceneSpec('scene-0553', 'boston-seaport', 'n008', '2018-08-28-16-43-51-0400'),
    SceneSpec('scene-0655', 'boston-seaport', 'n008', '2018-08-27-15-51-32-0400'),
    SceneSpec('scene-0757', 'boston-seaport', 'n008', '2018-08-30-15-16-55-0400'),
    SceneSpec('scene-0796', 'singapore-queenstown', 'n015', '2018-10-02-10-50-40+0800'),
    SceneSpec('scene-0916', 'singapore-queenstown', 'n015', '2018-10-08-15-36-50+0800'),
    SceneSpec('scene-1077', 'singapore-hollandvillage', 'n015', '2018-11-21-19-38-26+0800'),
    SceneSpec('scene-1094', 'singapore-hollandvillage', 'n015', '2018-11-21-19-58-31+0800'),
    SceneSpec('scene-1100', 'singapore-hollandvillage', 'n015', '2018-11-21-19-21-35+0800'),
)
# Scenes of one location share a map; they are placed around this point of the global frame.
# The map png starts at the global origin (nuScenes' map transform), so this stays small.
SCENE_AREA_CENTRE = (170.0, 170.0)
MAP_SIZE_M = 340.0
