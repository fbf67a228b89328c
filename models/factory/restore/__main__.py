"""`python -m restore --task denoise|lowlight`: data -> train -> export -> eval, resumable.

Run from models/factory (the npm script `models:restore` does: `npm run models:restore -- --task
denoise`). `--smoke` runs every stage on a tiny budget into the cache, never over the committed
packs; `--only` runs some stages (comma-separated) and skips the rest. `eval` writes eval.json,
the figure and MODEL_CARD.md; `int8` quantises unet.onnx for CPUs and ships unet.int8.onnx when
it costs ≤ 0.1 dB (quantize.py); `card` alone rewrites MODEL_CARD.md from eval.json (with
`--speed-from bench/results/summary.json`, first taking the engine's measured 24 MP speed).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

STAGES = ("data", "train", "export", "eval", "int8", "card")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m restore", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=("denoise", "lowlight"))
    p.add_argument("--smoke", action="store_true",
                   help="the whole recipe on a tiny budget (one package, 8 steps, small crops), "
                   "from scratch, into the cache (never over the committed packs)")
    p.add_argument("--only", default=",".join(STAGES),
                   help=f"stages to run, comma-separated, from {', '.join(STAGES)} (default: all)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default 2)")
    p.add_argument("--steps", type=int, default=None,
                   help="total training steps of a new run (default: the recipe's)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds this invocation may train; it checkpoints and stops, resume later")
    p.add_argument("--fit-budget", action="store_true",
                   help="size a new run to end within --budget (measures its speed first)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start the training run afresh instead of resuming its checkpoint")
    p.add_argument("--cache", type=Path, default=None,
                   help="data and run cache (default models/factory/.cache/restore)")
    p.add_argument("--run", type=Path, default=None, help="training run folder (default in cache)")
    p.add_argument("--out", type=Path, default=None, help="pack folder to write")
    p.add_argument("--vectors", type=Path, default=None, help="parity vector file to write")
    p.add_argument("--speed-from", type=Path, default=None,
                   help="with the card stage: take the engine's speed on a 24 MP photo from this "
                   "`npm run bench` summary (bench/results/summary.json) into eval.json and the card")
    args = p.parse_args(argv)
    args.stages = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in args.stages if s not in STAGES]
    if bad:
        p.error(f"unknown stage(s) {', '.join(bad)}; choose from {', '.join(STAGES)}")
    if args.smoke:
        args.resume = False  # a smoke run proves the whole recipe, so it always trains afresh
    if args.fit_budget and args.budget is None:
        p.error("--fit-budget needs --budget")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from . import config

    task = config.TASKS[args.task]
    cache = args.cache or config.CACHE
    smoke_dir = cache / "smoke"
    run = args.run or (smoke_dir if args.smoke else cache / "runs") / task.name
    out = args.out or (smoke_dir / "packs" / task.pack_id if args.smoke else config.pack_dir(task))
    vectors = args.vectors or (out / "parity.safetensors" if args.smoke else config.vectors_path(task))
    recipe = config.SMOKE_RECIPE if args.smoke else config.RECIPE
    plan = config.SMOKE_EVAL if args.smoke else config.EVAL[task.name]
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)

    from . import data

    manifest = None
    if any(s in args.stages for s in ("data", "export", "eval", "int8")):
        manifest = data.prepare(cache, smoke=args.smoke, log=log)

    if "train" in args.stages:
        from common.device import describe, seed_everything, select_device

        from .train import train

        if manifest is None:
            manifest = data.prepare(cache, smoke=args.smoke, log=log)
        device = select_device(args.device, args.threads)
        seed_everything(recipe.seed)
        photos = [im for _, im in data.load_split(cache, manifest, "train", args.smoke)]
        log(f"train: {task.name} on {describe(device)}, {len(photos)} photos, run {run}")
        state = train(task.name, photos, run, recipe, device, describe(device), steps=args.steps,
                      budget_s=args.budget, fit_budget=args.fit_budget, resume=args.resume, log=log)
        log(f"train: step {state['step']}/{state['total_steps']}, "
            f"{state['train_seconds']:.0f} s of training in all")

    if "export" in args.stages:
        from common.device import select_device

        from .export import export_pack
        from .train import load_ema, read_state

        select_device("cpu", args.threads)
        state = read_state(run)
        if state is None:
            raise SystemExit(f"no training run in {run}: run the train stage first")
        if state["step"] < state["total_steps"]:
            log(f"export: warning, the run stopped at step {state['step']} of {state['total_steps']}")
        val = data.load_split(cache, manifest, "val", args.smoke)
        export_pack(task, load_ema(run), state, out, vectors, val[0][1], args.smoke, log=log)

    if "eval" in args.stages:
        from common.device import select_device

        from .card import write_card
        from .evaluate import evaluate_pack

        select_device("cpu", args.threads)
        if not (out / "unet.onnx").is_file():
            raise SystemExit(f"no pack in {out}: run the export stage first")
        val = data.load_split(cache, manifest, "val", args.smoke)
        train_photos = data.load_split(cache, manifest, "train", args.smoke)
        record = evaluate_pack(task, out, val, train_photos, plan, manifest, log=log)
        write_card(task, out, record)
        log(f"eval: {out / 'MODEL_CARD.md'} written")
    if "int8" in args.stages:
        from common.device import select_device

        from .quantize import quantize_pack

        select_device("cpu", args.threads)
        if not (out / "unet.onnx").is_file():
            raise SystemExit(f"no pack in {out}: run the export stage first")
        val = data.load_split(cache, manifest, "val", args.smoke)
        train_photos = data.load_split(cache, manifest, "train", args.smoke)
        quantize_pack(task, out, train_photos, val, plan, log=log)
        if (out / "eval.json").is_file():
            import json

            from .card import write_card

            write_card(task, out, json.loads((out / "eval.json").read_text()))
            log(f"int8: {out / 'MODEL_CARD.md'} rewritten")
    if "card" in args.stages and "eval" not in args.stages:
        import json

        from .card import write_card

        from common.files import write_text_atomic

        from .evaluate import goals

        eval_path = out / "eval.json"
        if not eval_path.is_file():
            raise SystemExit(f"no {eval_path}: run the eval stage first")
        record = json.loads(eval_path.read_text())
        record["goals"] = goals(task, record["metrics"], plan)  # the goals' rules may have changed
        if args.speed_from is not None:
            from .card import speed_record

            record["speed"] = speed_record(task, json.loads(args.speed_from.read_text()),
                                           args.speed_from)
        write_text_atomic(eval_path, json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        write_card(task, out, record)
        log(f"card: {out / 'MODEL_CARD.md'} written from {eval_path}")
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
