"""`python -m shapes.rl`: B²-DiffuRL, DDPO and ablations on a Shapes base checkpoint.

  python -m shapes.rl --base .cache/shapes/base/model.pt --out .cache/shapes/rl --device cuda
  python -m shapes.rl --summarize .cache/shapes/rl     # summary.json + plot from the histories
  python -m shapes.rl --rebuild .cache/shapes/rl       # model.pt of every run from its adapter
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from .. import config

    p = argparse.ArgumentParser(prog="python -m shapes.rl", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, default=config.BASE_CHECKPOINT)
    p.add_argument("--out", type=Path, default=config.RL_DIR)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--smoke", action="store_true", help="tiny budget (seconds on a CPU)")
    p.add_argument("--seeds", type=int, default=None, help="seeds for B² and DDPO (default 3; 1 with --smoke)")
    p.add_argument("--ddpo-seeds", type=int, default=None, help="seeds for DDPO (default min(seeds, 2))")
    p.add_argument("--one", metavar="METHOD:SEED", help="run a single job of the plan (used by the parallel runner)")
    p.add_argument("--summarize", type=Path, metavar="DIR", help="only rebuild summary.json and the plot")
    p.add_argument("--features", action="store_true",
                   help="with --summarize: add feature-space diversity (trains A's classifier if not cached)")
    p.add_argument("--rebuild", type=Path, metavar="DIR",
                   help="rewrite each run's model.pt from base + adapter.pt and check its UNet digest")
    args = p.parse_args(argv)
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)

    if args.one:
        from . import main_one

        return main_one(args.one, args.base, args.out, args.device, args.smoke)
    if args.rebuild:
        from .rebuild import rebuild_all

        rebuild_all(args.base, args.rebuild, log)
        return 0
    if args.summarize:
        from .summary import add_feature_diversity, summarize

        add_feature_diversity(args.summarize, log, allow_training=args.features)
        summarize(args.summarize, log)
        return 0
    from common.device import describe, select_device

    from . import run_all

    device = select_device(args.device)
    log(f"rl on {describe(device)}")
    run_all(args.base, args.out, device, args.smoke, log, seeds=args.seeds,
            ddpo_seeds=args.ddpo_seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
