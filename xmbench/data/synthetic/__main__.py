"""Command line: ``python -m xmbench.data.synthetic --root DIR --seed 0 [options]``."""
import argparse
import time

from .nuscenes_writer import generate_nuscenes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog='python -m xmbench.data.synthetic',
                                     description='Generate a synthetic dataset in the nuScenes v1.0-mini layout.')
    parser.add_argument('--root', required=True, help='dataroot to create (replaced if a previous output)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--keyframes-per-scene', type=int, default=8)
    parser.add_argument('--image-width', type=int, default=1600)
    parser.add_argument('--image-height', type=int, default=900)
    parser.add_argument('--azimuth-steps', type=int, default=1080)
    parser.add_argument('--sweeps-per-keyframe', type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root = generate_nuscenes(args.root, seed=args.seed, keyframes_per_scene=args.keyframes_per_scene,
                             image_size=(args.image_width, args.image_height), azimuth_steps=args.azimuth_steps,
                             sweeps_per_keyframe=args.sweeps_per_keyframe)
    print(f'wrote {root} in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    main()
