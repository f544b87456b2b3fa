"""Evaluation benchmark (issue 7): how the metrics rank damage, and how long they take.

    python benchmarks/bench_evaluate.py                         # fox_walk vs blurred / shifted copies
    python benchmarks/bench_evaluate.py --weights ~/weights      # with real LPIPS / CLIP / I3D weights
    python benchmarks/bench_evaluate.py --random-weights        # time the networks with random weights

Makes copies of the ground-truth set (default ``../shared/data/multiview/fox_walk``, 13 views x 21
frames at 256 px) blurred with a Gaussian of sigma 1, 2, 4 px and shifted by 2, 4, 8 px, scores each
against the original with ``sv4d evaluate`` and prints one row per copy (every metric's overall
mean) plus the seconds each stage took. With ``--random-weights`` the networks get random weights
(saved to the work folder): their numbers mean nothing, but the timings are those of the real
networks. Writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sv4d.evaluate import EvalOptions, evaluate  # noqa: E402
from sv4d.evaluate.degrade import degrade_set  # noqa: E402

DAMAGE = [
    ("identical", {}),
    ("blur 1", {"blur_sigma": 1.0}),
    ("blur 2", {"blur_sigma": 2.0}),
    ("blur 4", {"blur_sigma": 4.0}),
    ("shift 2", {"shift_px": 2}),
    ("shift 4", {"shift_px": 4}),
    ("shift 8", {"shift_px": 8}),
]


def _random_weights(folder: Path) -> None:
    from sv4d.metrics.clip_score import CLIPScorer
    from sv4d.metrics.i3d import InceptionI3d
    from sv4d.metrics.lpips import LPIPS

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(LPIPS().state_dict(), folder / "lpips_vgg_random.pth")
    torch.save(CLIPScorer().state_dict(), folder / "clip_random.pt")
    torch.save(InceptionI3d().state_dict(), folder / "i3d_pretrained_400.pt")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gt", default=str(ROOT.parent / "shared/data/multiview/fox_walk"))
    ap.add_argument("--out", default=str(ROOT / "runs/bench_evaluate"))
    ap.add_argument("--weights", default=None, help="folder of real metric weights")
    ap.add_argument("--random-weights", action="store_true", help="random network weights (timings only)")
    ap.add_argument("--only", default=None, help="comma-separated damage names to run (default: all)")
    ap.add_argument("--views", default=None, help="views to score, e.g. 0,1,2 (default: all)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lpips = clip = i3d = None
    if args.random_weights:
        w = out / "random_weights"
        _random_weights(w)
        lpips, clip, i3d = str(w / "lpips_vgg_random.pth"), str(w / "clip_random.pt"), str(w / "i3d_pretrained_400.pt")
    views = [int(v) for v in args.views.split(",")] if args.views else None
    chosen = set(args.only.split(",")) if args.only else None
    rows = []
    for name, damage in DAMAGE:
        if chosen and name not in chosen:
            continue
        pred = Path(args.gt) if not damage else out / "sets" / name.replace(" ", "_")
        if damage and not pred.exists():
            degrade_set(args.gt, pred, **damage)
        t = time.perf_counter()
        m = evaluate(
            pred,
            args.gt,
            out / "reports" / name.replace(" ", "_"),
            EvalOptions(
                views=views, weights=args.weights, lpips=lpips, clip=clip, i3d=i3d, overwrite=True, progress=False
            ),
        )
        row = {
            "copy": name,
            "seconds": round(time.perf_counter() - t, 1),
            "stage_seconds": m["seconds"],
            **{k: v["mean"] for k, v in m["images"].items()},
        }
        for k, v in ((m["fvd"] or {}).get("variants") or {}).items():
            row[k] = v["fvd"]
        rows.append(row)
        cols = [k for k in row if k not in ("copy", "seconds", "stage_seconds")]
        if len(rows) == 1:
            print(f"{'copy':<10}" + "".join(f"{c:>11}" for c in cols) + f"{'seconds':>9}")
        print(f"{name:<10}" + "".join(f"{row[c]:>11.4g}" for c in cols) + f"{row['seconds']:>9.1f}", flush=True)
    n_img = len(views or range(13)) * 21
    print(f"stage seconds of the last run ({n_img} image pairs): {rows[-1]['stage_seconds']}")
    (out / "results.json").write_text(
        json.dumps({"rows": rows, "random_weights": args.random_weights, "torch": torch.__version__}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
