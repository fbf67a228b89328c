"""The PyTorch reference for `npm run bench`: the Shapes model the shapes-base pack was exported
from, sampled with the recipe's own DDIM loop (`shapes.model.ddim_sample`, float64 states like the
engine) and decoded by its VAE, on the CPU with the bench's thread count.

Prints one JSON line: median seconds per generation after a warm-up, or `{"skipped": reason}`
when the checkpoint or torch is not there (the bench records the reason instead of failing).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

FACTORY = Path(__file__).resolve().parents[2] / "models" / "factory"
DEFAULT_CHECKPOINT = FACTORY / ".cache" / "shapes" / "base" / "model.pt"


def unet_parity(model, onnx_file: str) -> float | str:
    """Max |ε_torch − ε_onnx| on one random batch: is the pack's UNet this checkpoint's?"""
    try:
        import numpy as np
        import onnxruntime as ort
        import torch
    except ImportError as err:
        return f"not checked: {err}"
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    c = model.cfg.latent_channels
    z = torch.randn((2, c, 16, 16), generator=gen)
    t = torch.tensor([500, 250])
    with torch.no_grad():
        states = model.encode_text(model.tokenize(["a red circle", ""]))
        eps = model.eps(z, t, states).numpy()
    out = session.run(None, {"sample": z.numpy(), "timestep": t.numpy().astype(np.int64),
                             "encoder_hidden_states": states.numpy()})[0]
    return float(np.abs(out - eps).max())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--prompt", default="a red circle left of a blue square")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--downsample", type=int, default=4, help="the VAE's factor (pack.json latent)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out-dir", help="save each image as a PNG here, as a user would (timed)")
    ap.add_argument("--onnx", help="the pack's unet.onnx: check that it is this network (max |Δε|)")
    ap.add_argument("--serve", action="store_true",
                    help="after the warm-up, time one run per seed read from stdin (serve.py)")
    args = ap.parse_args()

    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        # Named from the repository root, so no machine's absolute path ends up in the results.
        root = Path(__file__).resolve().parents[2]
        resolved = checkpoint.resolve()
        shown = resolved.relative_to(root) if resolved.is_relative_to(root) else checkpoint
        print(json.dumps({"skipped": f"no PyTorch checkpoint at {shown} "
                                     "(train it with `python -m shapes` in models/factory)"}))
        return 0
    try:
        import torch
        sys.path.insert(0, str(FACTORY))
        from shapes.model import ddim_sample, load_model, to_uint8
    except ImportError as err:
        print(json.dumps({"skipped": f"python packages missing: {err}"}))
        return 0

    torch.set_num_threads(args.threads)
    model = load_model(checkpoint, "cpu")
    side = args.size // args.downsample
    shape = (args.count, model.cfg.latent_channels, side, side)
    prompts = [args.prompt] * args.count

    @torch.no_grad()
    def once(seed: int):
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        z = ddim_sample(model, prompts, noise, args.steps, args.guidance)
        images = model.decode(z.float())
        if args.out_dir:
            from PIL import Image

            for k, pixels in enumerate(to_uint8(images)):
                Image.fromarray(pixels).save(Path(args.out_dir) / f"torch-{seed}-{k}.png")
        return images

    parity = unet_parity(model, args.onnx) if args.onnx else None
    once(args.seed)  # warm-up: first calls allocate and pick kernels
    if args.serve:
        from serve import serve

        def served(seed: int) -> None:
            once(seed)

        return serve({
            "tool": "PyTorch (shapes.model.ddim_sample + VAE decode)",
            "torch": torch.__version__,
            "checkpoint": str(checkpoint),
            "threads": args.threads,
            "savedPng": bool(args.out_dir),
            "onnxUnetMaxAbsDiff": parity,
        }, served)
    runs = []
    for i in range(args.repeats):
        started = time.perf_counter()
        images = once(args.seed + i)
        runs.append(time.perf_counter() - started)
    print(json.dumps({
        "tool": "PyTorch (shapes.model.ddim_sample + VAE decode)",
        "torch": torch.__version__,
        "checkpoint": str(checkpoint),
        "seconds": statistics.median(runs),
        "runs": runs,
        "steps": args.steps,
        "guidance": args.guidance,
        "count": args.count,
        "threads": args.threads,
        "shape": list(images.shape),
        "savedPng": bool(args.out_dir),
        "onnxUnetMaxAbsDiff": parity,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
