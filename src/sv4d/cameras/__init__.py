"""Every camera formula and constant of sv4d, defined once.

This package sits under everything else (it imports only :mod:`sv4d.errors`, NumPy and
PyTorch). Angles are degrees and always ordered (elevation, azimuth); poses are OpenGL
camera-to-world matrices; pixel centres are at +0.5.

- :mod:`.intrinsics`: :class:`Intrinsics`, the SV3D/SV4D field of view :data:`SV4D_FOV_DEG`;
- :mod:`.orbit`: the world frame and angle conventions, :class:`ViewAngles`, elevation limits,
  orbit camera-to-world and its inverse, OpenGL/OpenCV, the framing distance;
- :mod:`.paths`: orbits of views, ``el:az`` lists, orbit-video paths, the auto distance;
- :mod:`.rays`: rays through pixels, projection, world-to-camera, the scene box;
- :mod:`.rig`: :class:`Rig` (views, intrinsics, frame times) and the unit-time map;
- :mod:`.conditioning`: the model's view layout and its angle conditioning.
"""

from .conditioning import model_views, relative_angles
from .intrinsics import PIXEL_CONVENTION, SV4D_FOV_DEG, Intrinsics
from .orbit import (
    CONVENTIONS,
    ELEVATION_LIMIT_DEG,
    GL_TO_CV,
    OBJECT_HALF_EXTENT,
    ViewAngles,
    check_elevation,
    framing_distance,
    opencv_from_opengl,
    orbit_angles,
    orbit_c2w,
    rotation_angle_deg,
)
from .paths import dynamic_orbit, fit_distance, orbit_path, parse_views, static_orbit
from .rays import camera_rays, project, scene_bound, world_to_camera_opencv
from .rig import Rig, TimeSpan, View, pose_matrix

__all__ = [
    "CONVENTIONS",
    "ELEVATION_LIMIT_DEG",
    "GL_TO_CV",
    "OBJECT_HALF_EXTENT",
    "PIXEL_CONVENTION",
    "SV4D_FOV_DEG",
    "Intrinsics",
    "Rig",
    "TimeSpan",
    "View",
    "ViewAngles",
    "camera_rays",
    "check_elevation",
    "dynamic_orbit",
    "fit_distance",
    "framing_distance",
    "model_views",
    "opencv_from_opengl",
    "orbit_angles",
    "orbit_c2w",
    "orbit_path",
    "parse_views",
    "pose_matrix",
    "project",
    "relative_angles",
    "rotation_angle_deg",
    "scene_bound",
    "static_orbit",
    "world_to_camera_opencv",
]
