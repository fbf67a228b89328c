"""What a user would run instead of `retrace generate` on an optimum ONNX export: diffusers'
`OnnxStableDiffusionPipeline` on onnxruntime for Python, same files, same threads, DDIM.

Times `repeats` generations after one warm-up and prints one JSON line (median seconds, the
time spent inside onnxruntime's `run`, the settings). Used by `npm run bench`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


class TimedSession:
    """Wraps an onnxruntime InferenceSession and adds up the seconds spent in `run`."""

    def __init__(self, session):
        self._session = session
        self.seconds = 0.0
        self.calls = 0

    def run(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self._session.run(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1

    def __getattr__(self, name):
        return getattr(self._session, name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="diffusers/optimum ONNX Stable Diffusion folder")
    ap.add_argument("--prompt", default="a red circle left of a blue square")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out-dir", help="save each image as a PNG here, as a user would (timed)")
    ap.add_argument("--serve", action="store_true",
                    help="after the warm-up, time one run per seed read from stdin (serve.py)")
    args = ap.parse_args()

    folder = Path(args.model)
    if not (folder / "model_index.json").is_file():
        print(json.dumps({"skipped": f"{folder}: no model_index.json"}))
        return 0
    try:
        import numpy as np
        import onnxruntime as ort
        from diffusers import DDIMScheduler, OnnxRuntimeModel, OnnxStableDiffusionPipeline
        from transformers import CLIPTokenizer
    except ImportError as err:  # the row is skipped, not the bench
        print(json.dumps({"skipped": f"python packages missing: {err}"}))
        return 0

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

    def load(name: str) -> OnnxRuntimeModel:
        return OnnxRuntimeModel.from_pretrained(
            folder / name, provider="CPUExecutionProvider", sess_options=options
        )

    parts = {name: load(name) for name in ("vae_encoder", "vae_decoder", "text_encoder", "unet")}
    timers = {}
    for name, part in parts.items():
        timers[name] = TimedSession(part.model)
        part.model = timers[name]
    pipe = OnnxStableDiffusionPipeline(
        **parts,
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        # The export says PNDM; the engine samples with DDIM (no clipping): compare like with like.
        scheduler=DDIMScheduler.from_pretrained(folder / "scheduler", clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)

    def once(seed: int):
        images = pipe(
            args.prompt,
            height=args.size,
            width=args.size,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            eta=0.0,
            generator=np.random.RandomState(seed),
            output_type="pil" if args.out_dir else "np",
        ).images
        if args.out_dir:
            for k, image in enumerate(images):
                image.save(Path(args.out_dir) / f"diffusers-{seed}-{k}.png")
            return np.stack([np.asarray(image) for image in images])
        return images

    once(args.seed)  # warm-up: first runs allocate onnxruntime's arenas
    if args.serve:
        from serve import serve

        def timed_once(seed: int) -> dict:
            before = sum(t.seconds for t in timers.values())
            once(seed)
            return {"networkSeconds": sum(t.seconds for t in timers.values()) - before}

        return serve({
            "tool": "diffusers OnnxStableDiffusionPipeline",
            "diffusers": __import__("diffusers").__version__,
            "onnxruntime": ort.__version__,
            "threads": args.threads,
            "savedPng": bool(args.out_dir),
        }, timed_once)
    runs, network = [], []
    for i in range(args.repeats):
        before = sum(t.seconds for t in timers.values())
        started = time.perf_counter()
        images = once(args.seed + i)
        runs.append(time.perf_counter() - started)
        network.append(sum(t.seconds for t in timers.values()) - before)
    print(json.dumps({
        "tool": "diffusers OnnxStableDiffusionPipeline",
        "diffusers": __import__("diffusers").__version__,
        "onnxruntime": ort.__version__,
        "seconds": statistics.median(runs),
        "runs": runs,
        "networkSeconds": statistics.median(network),
        "steps": args.steps,
        "guidance": args.guidance,
        "size": args.size,
        "threads": args.threads,
        "shape": list(images.shape),
        "savedPng": bool(args.out_dir),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
