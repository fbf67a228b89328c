"""What a user would run instead of `retrace generate` on an optimum ONNX export: diffusers'
`OnnxStableDiffusionPipeline` on onnxruntime for Python, same files, same threads, DDIM.

Times `repeats` generations after one warm-up and prints one JSON line (median seconds, the
time spent inside onnxruntime's `run`, the settings). Used by `npm run bench`, and by
`npm run bench:full-size` (bench/full-size.mjs) with `--latents` (Retrace's own initial noise, so
both tools start from the same latent) and the memory and start-up figures: `sessionSeconds`
(opening the four sessions), `firstCallSeconds` (the warm-up generation) and `peakRssMiB` (the
process's VmHWM so far, in the header and in every answer). `--graph-report` runs no pipeline:
it profiles one call of each network on a small input and says which element type each node
computed in, and how many Casts onnxruntime put in (what it does with an fp16 export on CPU).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def peak_rss_mib() -> float | None:
    """This process's peak resident set (VmHWM) in MiB; None where /proc is not there."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


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


# Small inputs for --graph-report: every node of each network runs, in a few seconds.
REPORT_SHAPES = {
    "unet": {"sample": (2, 4, 16, 16), "timestep": (2,), "encoder_hidden_states": (2, 77, 768)},
    "text_encoder": {"input_ids": (1, 77)},
    "vae_decoder": {"latent_sample": (1, 4, 16, 16)},
    "vae_encoder": {"sample": (1, 3, 128, 128)},
}


def graph_report(folder: Path, threads: int) -> dict:
    """One profiled call per network (CPU provider, all graph optimisations): per node, the element
    type of its first floating-point input, as onnxruntime's profiler records it. In an fp16 export,
    nodes that computed in float32 are those onnxruntime had no float16 CPU kernel for (it wraps
    them in Casts it inserts) or that the converter left in float32 on purpose."""
    import collections
    import tempfile

    import numpy as np
    import onnxruntime as ort

    numpy_types = {"tensor(float16)": np.float16, "tensor(float)": np.float32,
                   "tensor(int64)": np.int64, "tensor(int32)": np.int32}
    rng = np.random.default_rng(0)
    report = {}
    with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
        for name, shapes in REPORT_SHAPES.items():
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tmp) / name)
            started = time.perf_counter()
            session = ort.InferenceSession(str(folder / name / "model.onnx"), options,
                                           providers=["CPUExecutionProvider"])
            opened = time.perf_counter() - started
            feeds = {}
            for value in session.get_inputs():
                dtype = numpy_types[value.type]
                # The graph's own fixed dimensions (a hidden size, say) where it declares them.
                shape = [d if isinstance(d, int) else fallback
                         for d, fallback in zip(value.shape, shapes[value.name])]
                if np.issubdtype(dtype, np.integer):
                    feeds[value.name] = rng.integers(0, 500, shape).astype(dtype)
                else:
                    feeds[value.name] = rng.standard_normal(shape).astype(dtype)
            started = time.perf_counter()
            session.run(None, feeds)
            ran = time.perf_counter() - started
            with open(session.end_profiling(), encoding="utf-8") as f:
                events = json.load(f)
            del session
            computed_in = collections.Counter()
            float32_ops = collections.Counter()
            casts = inserted = 0
            seconds = collections.Counter()
            for event in events:
                if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
                    continue
                op = event["args"].get("op_name", "?")
                types = [next(iter(t)) for t in event["args"].get("input_type_shape", []) if t]
                kind = next((t for t in types if t in ("float16", "float", "double")), "none")
                seconds["cast" if op == "Cast" else kind] += event.get("dur", 0) / 1e6
                if op == "Cast":
                    casts += 1
                    inserted += "InsertedPrecisionFreeCast" in event["name"]
                    continue
                computed_in[kind] += 1
                if kind == "float":
                    float32_ops[op] += 1
            report[name] = {
                "inputs": {k: str(v.dtype) for k, v in feeds.items()},
                "sessionSeconds": round(opened, 2),
                "callSeconds": round(ran, 3),
                "nodesBy1stFloatInputType": dict(computed_in),
                "float32Ops": dict(float32_ops.most_common()),
                "castNodesRun": casts,
                "castNodesInsertedByOnnxruntime": inserted,
                "kernelSecondsByType": {k: round(v, 4) for k, v in seconds.items()},
                "smallInput": {k: list(v.shape) for k, v in feeds.items()},
            }
    return {"onnxruntime": ort.__version__, "threads": threads, "networks": report}


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
    ap.add_argument("--latents", help="a .npy initial latent [1, 4, H/8, W/8] used for every run "
                    "instead of a draw from the seed (the seed then only names the PNG)")
    ap.add_argument("--graph-report", action="store_true",
                    help="profile one small call per network (element types, Casts) and exit")
    ap.add_argument("--serve", action="store_true",
                    help="after the warm-up, time one run per seed read from stdin (serve.py)")
    args = ap.parse_args()

    folder = Path(args.model)
    if not (folder / "model_index.json").is_file():
        print(json.dumps({"skipped": f"{folder}: no model_index.json"}))
        return 0
    if args.graph_report:
        print(json.dumps(graph_report(folder, args.threads)))
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

    opening = time.perf_counter()
    parts = {name: load(name) for name in ("vae_encoder", "vae_decoder", "text_encoder", "unet")}
    session_seconds = time.perf_counter() - opening
    latents = None
    if args.latents:
        # In the type the unet takes (float16 for an fp16 export): the pipeline feeds it as given.
        sample_type = next(i.type for i in parts["unet"].model.get_inputs() if i.name == "sample")
        latents = np.load(args.latents).astype(np.float16 if "float16" in sample_type else np.float32)
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
            latents=latents,
            output_type="pil" if args.out_dir else "np",
        ).images
        if args.out_dir:
            for k, image in enumerate(images):
                image.save(Path(args.out_dir) / f"diffusers-{seed}-{k}.png")
            return np.stack([np.asarray(image) for image in images])
        return images

    first_call = time.perf_counter()
    once(args.seed)  # warm-up: first runs allocate onnxruntime's arenas
    first_call_seconds = time.perf_counter() - first_call
    if args.serve:
        from serve import serve

        def timed_once(seed: int) -> dict:
            before = {name: t.seconds for name, t in timers.items()}
            cpu = time.process_time()
            once(seed)
            by_network = {name: t.seconds - before[name] for name, t in timers.items()}
            return {
                # CPU seconds of this process during the run: with one thread, cpu ÷ wall well
                # under 1 means something else on the machine took the core.
                "cpuSeconds": time.process_time() - cpu,
                "networkSeconds": sum(by_network.values()),
                "networkSecondsBy": by_network,
                "peakRssMiB": peak_rss_mib(),
            }

        return serve({
            "tool": "diffusers OnnxStableDiffusionPipeline",
            "diffusers": __import__("diffusers").__version__,
            "onnxruntime": ort.__version__,
            "threads": args.threads,
            "savedPng": bool(args.out_dir),
            "sessionSeconds": session_seconds,
            "firstCallSeconds": first_call_seconds,
            "peakRssMiB": peak_rss_mib(),
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
        "sessionSeconds": session_seconds,
        "firstCallSeconds": first_call_seconds,
        "peakRssMiB": peak_rss_mib(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
