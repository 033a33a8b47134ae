"""Generated datasets in real on-disk formats, so the whole pipeline runs without real data."""
from .nuscenes_writer import generate_nuscenes

__all__ = ['generate_nuscenes']
