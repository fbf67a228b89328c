"""B²-DiffuRL, DDPO and the B² ablations on the Shapes model (issue 4, ALGORITHMS.md §4).

`run_all` trains every run (B² over several seeds, DDPO at the same reward-query budget, B² without
branching and without progressive stages), evaluates the base and each run, and writes
`<out>/<method>-seed<k>/{model.pt,unet.pt,history.json,samples.npz}`, `<out>/summary.json` and
`<out>/alignment_vs_queries.png`. `python -m shapes.rl` is its command line.

Tuning is full fine-tuning of the UNet (text encoder and VAE frozen); `train.py` says why LoRA
(still available, `Budget.lora_rank`) was measured and dropped. `model.pt` is a plain `ShapesModel`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from .train import FULL, METHODS, SMOKE, Budget, run_one, with_guidance

Log = Callable[[str], None]

NOTES = ("Full fine-tuning of the UNet with PPO-clip (text encoder and VAE are the base's, "
         "unchanged): export model.pt as a plain ShapesModel. LoRA rank 4 on the attention "
         "projections at the prescribed learning rates was tried first on the GPU and left the "
         "model's η = 0 samples unchanged within noise after 9 600 queries, hence full tuning. "
         "Alignment numbers are detector scores of DDIM η = 0 samples at the base's guidance and "
         "20 steps unless the key says @eta1.")


def plan(smoke: bool, seeds: int | None = None, ddpo_seeds: int | None = None) -> list[tuple[str, int]]:
    """The (method, seed) jobs: base evaluation, B² and DDPO over seeds, one run per ablation.

    Full default: B² × 3, DDPO × 2 (a DDPO query costs ~3× a B² one: it trains every step of
    every sample, and the GPU call is short), each ablation × 1; smoke: one of each.
    """
    n = seeds if seeds is not None else (1 if smoke else 3)
    nd = ddpo_seeds if ddpo_seeds is not None else (1 if smoke else min(n, 2))
    jobs = [("base", 0)] + [("b2", k) for k in range(n)] + [("ddpo", k) for k in range(nd)]
    return jobs + [("b2-nobranch", 0), ("b2-noprogressive", 0)]


def budget_for(smoke: bool) -> Budget:
    from .. import config

    return with_guidance(SMOKE if smoke else FULL, config.BaseRecipe().guidance)


def run_all(base_model_path, out_dir, device, smoke: bool, log: Log,
            seeds: int | None = None, parallel: bool | None = None,
            budget: Budget | None = None, ddpo_seeds: int | None = None) -> dict:
    """Every RL run, then the summary and the plot; returns the summary dict.

    On CUDA the runs go in parallel processes sharing the GPU (each is too small to fill it);
    on the CPU one after another in this process.
    """
    from .summary import summarize

    base = Path(base_model_path)
    if not base.is_file():
        raise FileNotFoundError(f"RL needs the base checkpoint {base}; run the base stage first")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if not isinstance(device, torch.device) else device
    budget = budget or budget_for(smoke)
    jobs = plan(smoke, seeds, ddpo_seeds)
    if parallel is None:
        parallel = device.type == "cuda"
    log(f"rl: {len(jobs)} runs ({', '.join(f'{m}-seed{k}' for m, k in jobs)}), "
        f"{budget.queries} queries each, {'parallel' if parallel else 'sequential'} on {device}")
    if parallel:
        failed = _run_parallel(jobs, base, out, device, smoke, log)
    else:
        failed = []
        for method, seed in jobs:
            run_one(method, seed, base, out, device, budget, log)
    # Summarise what finished even if a run failed: a GPU call is too dear to lose whole.
    summary = summarize(out, log)
    if failed:
        raise RuntimeError(f"RL runs failed: {', '.join(failed)} (see {out / 'logs'})")
    return summary


def _run_parallel(jobs, base: Path, out: Path, device: torch.device, smoke: bool,
                  log: Log) -> list[str]:
    factory = Path(__file__).resolve().parents[2]
    procs = []
    for method, seed in jobs:
        name = f"{method}-seed{seed}"
        (out / "logs").mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "shapes.rl", "--one", f"{method}:{seed}", "--base", str(base),
               "--out", str(out), "--device", device.type] + (["--smoke"] if smoke else [])
        handle = open(out / "logs" / f"{name}.txt", "w")
        env = dict(os.environ, OMP_NUM_THREADS="1")  # many processes share the host's cores
        procs.append((name, subprocess.Popen(cmd, cwd=factory, stdout=handle,
                                             stderr=subprocess.STDOUT, env=env), handle))
    failed = []
    for name, proc, handle in procs:
        code = proc.wait()
        handle.close()
        log(f"rl {name}: exit {code}")
        if code != 0:
            failed.append(name)
    return failed


def main_one(spec: str, base: Path, out: Path, device_name: str, smoke: bool) -> int:
    """One job of `run_all` in its own process (`--one method:seed`)."""
    from common.device import select_device

    method, _, seed = spec.partition(":")
    device = select_device(device_name, threads=1)
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)

    result = run_one(method, int(seed or 0), base, out, device, budget_for(smoke), log)
    log(json.dumps(result.get("final", {})))
    return 0
