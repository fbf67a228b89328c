"""`python -m shapes`: base training -> RL tuning -> export -> Time-Shift -> model card.

Run from models/factory (`npm run models:shapes`). `--smoke` runs every stage on a tiny budget
into `.cache/shapes/smoke/`, never over the committed packs; `--only base,export` runs some stages.
`--rl-sanity` runs only the CPU RL check of issue 12 (`shapes/rl/sanity.py`).
Each stage reads what the previous ones left in the cache, so stages can run on different machines
(the base on a GPU, export and card here).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

STAGES = ("base", "rl", "export", "timeshift", "card")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m shapes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="the whole recipe on a tiny budget (< 5 min, CPU)")
    p.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    p.add_argument("--only", default=",".join(STAGES),
                   help=f"stages to run, comma-separated, from {', '.join(STAGES)} (default: all)")
    p.add_argument("--cache", type=Path, default=None, help="cache folder (default models/factory/.cache/shapes)")
    p.add_argument("--rl-sanity", action="store_true",
                   help="only the CPU RL sanity check (issue 12): DDPO and B² on the one-object "
                        "prompts from the shapes-base pack, into <cache>/rl-sanity/")
    args = p.parse_args(argv)
    args.stages = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in args.stages if s not in STAGES]
    if bad:
        p.error(f"unknown stage(s) {', '.join(bad)}; choose from {', '.join(STAGES)}")
    return args


class Paths:
    """Where each stage reads and writes; smoke runs live entirely under the cache."""

    def __init__(self, cache: Path, smoke: bool):
        from . import config

        root = cache / "smoke" if smoke else cache
        self.base = root / "base" / "model.pt"
        self.rl = root / "rl"
        self.timeshift = root / "timeshift.json"
        self.packs = root / "packs" if smoke else config.PACKS
        self.parity = root / "parity" if smoke else config.PARITY


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from . import config

    if args.rl_sanity:
        from .rl.sanity import DEFAULT, run_sanity

        t_start = time.time()
        run_sanity((args.cache or config.CACHE) / "rl-sanity", DEFAULT,
                   lambda msg: print(f"[{time.time() - t_start:7.1f}s] {msg}", flush=True))
        return 0
    from common.device import describe, seed_everything, select_device

    paths = Paths(args.cache or config.CACHE, args.smoke)
    device = select_device(args.device)
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)

    log(f"shapes: stages {','.join(args.stages)} on {describe(device)}{' (smoke)' if args.smoke else ''}")
    seed_everything(0)
    if "base" in args.stages:
        from .train_base import train_base

        recipe = config.SMOKE_BASE if args.smoke else config.BaseRecipe()
        record = train_base(paths.base, device, recipe, log)
        log("base: " + json.dumps(record["eval"]))
    if "rl" in args.stages:
        from .rl import run_all

        run_all(paths.base, paths.rl, device, args.smoke, log)
    if "export" in args.stages:
        from .export import export_all

        export_all(paths.base, paths.rl, paths.packs, paths.parity, log, smoke=args.smoke)
    if "timeshift" in args.stages:
        from .card import run_timeshift

        run_timeshift(paths.base, paths.timeshift, device, args.smoke, log)
    if "card" in args.stages:
        from .card import write_cards

        write_cards(paths.base, paths.rl, paths.timeshift, paths.packs, log, smoke=args.smoke)
    log("shapes: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
