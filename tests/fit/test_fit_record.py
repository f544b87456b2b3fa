"""The fit checkpoint's typed record: the layout earlier checkpoints hold reads back, a round trip
keeps every field, resume options are compared by name, a malformed record is a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from sv4d.cameras import Intrinsics, Rig, TimeSpan, orbit_c2w
from sv4d.errors import Sv4dError
from sv4d.fit.record import RESUME_FIELDS, FitRecord

# the meta dict a checkpoint of the previous release carries (keys and value types as it wrote them)
LEGACY = {
    "source": "/data/fox",
    "views": [0, 2],
    "frames": [0, 5, 10],
    "resolution": [32, 32],
    "method": "nerf",
    "seed": 3,
    "settings": {"rays": 512},
    "visibility": "auto",
    "reference_views": [0],
    "generated": False,
    "times_s": [0.0, 0.25, 0.5],
    "camera_distance": 2.0,
    "time_origin": 0.0,
    "time_span": 1.0,
    "intrinsics": {"width": 32, "height": 32, "fx": 50.0, "fy": 50.0, "cx": 16.0, "cy": 16.0},
    "c2w": [
        orbit_c2w(0.0, 0.0, 2.0).astype(np.float32).tolist(),
        orbit_c2w(20.0, 75.0, 2.0).astype(np.float32).tolist(),
    ],
    "azimuth_deg": [0.0, 75.0],
    "elevation_deg": [0.0, 20.0],
}


def test_an_earlier_checkpoints_record_reads_into_typed_fields():
    r = FitRecord.from_dict(LEGACY)
    assert r.method == "nerf" and r.views == [0, 2] and r.frames == [0, 5, 10] and r.seed == 3
    assert r.resolution == [32, 32] and r.camera_distance == 2.0 and r.settings == {"rays": 512}
    assert r.rig.intrinsics == Intrinsics(32, 32, 50.0, 50.0, 16.0, 16.0)
    np.testing.assert_allclose(r.rig.elevation_deg, [0.0, 20.0])
    # the frames' unit times come from the whole set's span, not the fitted frames'
    assert r.unit_times() == [0.0, 0.25, 0.5]
    assert r.intrinsics(16) == r.rig.intrinsics.at_height(16)
    assert r.to_dict() == LEGACY  # written back in the same layout


def test_round_trip_and_resume_comparison():
    rig = Rig.orbit([(10.0, a) for a in (0.0, 90.0)], 1.8, Intrinsics.from_fov(40.0, 24), [1.0, 1.5])
    r = FitRecord(source="s", method="gaussians", rig=rig, time_span=TimeSpan(1.0, 2.0), views=[1, 3], frames=[2, 4])
    back = FitRecord.from_dict(r.to_dict())
    assert back.to_dict() == r.to_dict() and back.unit_times() == [0.0, 0.25]
    assert back.mismatch(r) is None
    other = FitRecord.from_dict({**r.to_dict(), "seed": 7, "settings": {"x": 1}})
    assert "seed=0, not 7" in r.mismatch(other)
    assert set(RESUME_FIELDS) <= set(r.to_dict())


@pytest.mark.parametrize("key", ["c2w", "intrinsics", "time_span", "frames", "method"])
def test_a_malformed_record_names_what_is_wrong(key):
    with pytest.raises(Sv4dError, match="fit record is incomplete or malformed"):
        FitRecord.from_dict({k: v for k, v in LEGACY.items() if k != key}, "ck.pt")
    with pytest.raises(Sv4dError, match="ck.pt"):
        FitRecord.from_dict({**LEGACY, "times_s": [0.0, float("nan"), 0.5]}, "ck.pt")
