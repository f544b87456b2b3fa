"""Data benchmark (issue 5): rendering animated assets, and curating a collection of them.

    python benchmarks/bench_data.py                 # both parts
    python benchmarks/bench_data.py --part reference

Part "reference": renders Fox.glb's Walk clip with the cameras and frame times of the
ground-truth set ``../shared/data/multiview/fox_walk`` (13 views x 21 frames, 256 px), times it,
and scores it against that set with ``sv4d evaluate`` (same cameras must give the same images).

Part "curate": renders every clip of every asset in ``../shared/data/assets`` (8-view static orbit
at elevation 0, 21 frames, 128 px) plus a deliberately dark render of Fox Walk, then runs
``sv4d curate`` over the collection and prints each set's measures and verdict.
Writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sv4d.data.curate import curate  # noqa: E402
from sv4d.data.gltf import GltfAsset  # noqa: E402
from sv4d.data.render_asset import AssetRenderOptions, render_asset  # noqa: E402
from sv4d.evaluate import EvalOptions, evaluate  # noqa: E402


def reference(shared: Path, out: Path) -> dict:
    ref = shared / "data/multiview/fox_walk"
    t = time.perf_counter()
    meta = render_asset(
        shared / "data/assets/Fox.glb",
        out / "fox_walk_like",
        AssetRenderOptions(clip="Walk", like=str(ref), overwrite=True),
        progress=False,
    )
    seconds = time.perf_counter() - t
    m = evaluate(out / "fox_walk_like", ref, out / "fox_walk_like_eval", EvalOptions(overwrite=True, progress=False))
    row = {
        "seconds": round(seconds, 1),
        "per_image_ms": meta["timing_s"]["per_image_ms"],
        "posing_s": meta["timing_s"]["posing"],
        **{k: v["mean"] for k, v in m["images"].items()},
        "psnr_min": min(min(r) for r in m["images"]["psnr"]["per_image"]),
    }
    print(
        f"Fox Walk like fox_walk: 273 images in {row['seconds']} s ({row['per_image_ms']} ms per image, posing "
        f"{row['posing_s']} s); against the reference: PSNR {row['psnr']:.2f} dB (lowest image "
        f"{row['psnr_min']:.2f}), SSIM {row['ssim']:.4f}, mask IoU {row['iou']:.4f}"
    )
    return row


def collection(shared: Path, out: Path) -> dict:
    sets = []
    t = time.perf_counter()
    for path in sorted((shared / "data/assets").glob("*.gl*")):
        asset = GltfAsset.load(path)
        for clip in asset.clips or [None]:
            name = f"{path.stem}_{clip.name if clip else 'static'}"
            render_asset(
                path,
                out / "sets" / name,
                AssetRenderOptions(clip=clip.index if clip else None, size=128, overwrite=True),
                progress=False,
            )
            sets.append(out / "sets" / name)
    render_asset(
        shared / "data/assets/Fox.glb",
        out / "sets" / "Fox_Walk_dark",
        AssetRenderOptions(clip="Walk", size=128, light_scale=0.02, overwrite=True),
        progress=False,
    )
    sets.append(out / "sets" / "Fox_Walk_dark")
    render_s = time.perf_counter() - t
    t = time.perf_counter()
    report = curate(sets, out / "curation", overwrite=True, progress=False)
    curate_s = time.perf_counter() - t
    print(f"rendered {len(sets)} sets (8 views x 21 frames, 128 px) in {render_s:.0f} s; curated in {curate_s:.1f} s")
    print(f"{'set':<28}{'drift':>8}{'scale':>8}{'motion':>8}{'luma':>7}  verdict")
    for s in report["sets"]:
        m = s["measures"]
        drift = "-" if m.get("drift") is None else f"{m['drift']:.3f}"
        print(
            f"{Path(s['path']).name:<28}{drift:>8}{m['scale_ratio']:>8.3f}{m['motion']:>8.3f}{m['luminance']:>7.3f}  "
            + ("keep" if s["keep"] else "drop: " + "; ".join(s["reasons"]))
        )
    return {"render_s": round(render_s, 1), "curate_s": round(curate_s, 1), "sets": report["sets"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--out", default=str(ROOT / "runs/bench_data"))
    ap.add_argument("--part", choices=("all", "reference", "curate"), default="all")
    args = ap.parse_args()
    shared, out = Path(args.shared), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    if args.part in ("all", "reference"):
        results["reference"] = reference(shared, out)
    if args.part in ("all", "curate"):
        results["curate"] = collection(shared, out)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
