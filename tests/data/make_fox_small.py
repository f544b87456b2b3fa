"""Make ``tests/data/multiview/fox_small/``, the small multi-view set the tests read.

How it was made (run once from the repository root, with the shared data checked out beside it):

    python3 tests/data/make_fox_small.py [--src ../shared/data/multiview/fox_walk]

- Source: ``shared/data/multiview/fox_walk`` (Fox.glb, clip "Walk", 13 views x 21 frames,
  256x256), read with ``sv4d.io.multiview.read_multiview``.
- Kept: views 0, 1, 3, 9 (azimuth 0, 30, 120 at elevation 0 and azimuth 45 at elevation 20),
  renumbered view_00..view_03; frames 0, 5, 10 with their original times.
- RGBA resized 256 -> 64 with ``PIL.Image.resize(..., LANCZOS)``. Pillow premultiplies RGBA by
  alpha before resampling and un-premultiplies after, so no colour bleeds from the background.
- Intrinsics scaled with ``Intrinsics.scaled``; cameras (c2w) unchanged.
- Written with ``write_multiview`` (rgb_white composited from the resized RGBA), with the
  original "normalization" block and a "source" note carrying the Fox.glb licence line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from sv4d.io.multiview import read_multiview, write_multiview

HERE = Path(__file__).resolve().parent
VIEWS, FRAMES, SIZE = [0, 1, 3, 9], [0, 5, 10], 64
LICENCE = ("Fox: model (c) 2014 PixelMannen, CC0 1.0; rigging and animation (c) 2014 tomkranis, "
           "CC BY 4.0; glTF conversion (c) 2017 @AsoboStudio and @scurest, CC BY 4.0. "
           "Attribution required.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=HERE.parents[2] / "shared/data/multiview/fox_walk")
    parser.add_argument("--out", type=Path, default=HERE / "multiview/fox_small")
    args = parser.parse_args()

    src = read_multiview(args.src)
    rgba = np.stack([
        np.stack([np.asarray(Image.fromarray(src.load_image(v, f, "rgba")).resize(
            (SIZE, SIZE), Image.Resampling.LANCZOS)) for f in FRAMES])
        for v in VIEWS
    ])
    source = {
        "dataset": "shared/data/multiview/fox_walk (asset Fox.glb, clip Walk)",
        "views": VIEWS, "frames": FRAMES,
        "processing": f"RGBA resized {src.intrinsics.width}->{SIZE} with PIL LANCZOS "
                      "(premultiplied internally); rgb_white composited from it",
        "licence": LICENCE,
        "made_by": "tests/data/make_fox_small.py",
    }
    write_multiview(
        args.out,
        intrinsics=src.intrinsics.scaled(SIZE, SIZE),
        views=[src.views[v] for v in VIEWS],
        times=src.times[FRAMES],
        rgba=rgba,
        camera_distance=src.camera_distance,
        extra={"normalization": src.meta["normalization"], "source": source},
        overwrite=True,
        compress_level=9,
    )
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({size / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
