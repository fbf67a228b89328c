"""Build models/factory/.cache/sd15-random: SD 1.5's architecture, random seeded weights, as ONNX.

Stable Diffusion 1.5's full-size networks with random, seeded weights, in the ONNX layout
optimum's exporter writes, as fp32 and as fp16.

What it is for: measuring Retrace against other tools at the real model's size (a 3.4 GB fp32
UNet at 512×512) without a model hub. The weights are random, so the images are noise, but every
network has Stable Diffusion 1.5's shapes, operators and cost. Nothing is downloaded: the configs
below are SD 1.5's, written out by hand; the tokenizer is test/fixtures/tiny-sd's (all its ids are
below CLIP's 49408, so the full-size text encoder accepts them).

Phases (each one timed and printed):
  1. build     diffusers UNet2DConditionModel / AutoencoderKL and transformers CLIPTextModel
               from the SD 1.5 configs, each seeded; a forward pass of the UNet checks that the
               random init gives a finite output of sane magnitude; save_pretrained to a temp dir.
  2. export    optimum.exporters.onnx.main_export(task="stable-diffusion") into OUT/fp32. The fp32
               UNet is over protobuf's 2 GB limit, so it comes as unet/model.onnx + model.onnx_data.
  3. fp16      onnxconverter-common's convert_float_to_float16(keep_io_types=False) on unet,
               text_encoder, vae_decoder and vae_encoder into OUT/fp16 (float inputs and outputs
               become float16, timestep stays int64, input_ids int32), the other files copied.
  check        after 2 and after 3: every graph opened in onnxruntime (CPU) and run once on the init
               check's small inputs, compared with PyTorch's outputs (kept in OUT/reference.npz).

Each finished folder gets a fixture.json (seed, configs, timings); a folder that has one is not
built again unless --force. Run from the repository root:
    models/factory/.venv/bin/python scripts/sd-fixture/make_full_size.py [--out DIR] [--skip-fp16] [--force]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "models" / "factory" / ".cache" / "sd15-random"
TOKENIZER = ROOT / "test" / "fixtures" / "tiny-sd" / "tokenizer"
SEED = 15_2022_10
COMPONENTS = ("unet", "text_encoder", "vae_decoder", "vae_encoder")
STAMP = "fixture.json"
# The init check's inputs and PyTorch's outputs (in the fixture root), for the ONNX checks.
REFERENCE = "reference.npz"
# onnx.save refuses a single protobuf of 2 GiB or more; keep a margin for the graph itself.
PROTO_LIMIT = 2**31 - 64 * 2**20

# Stable Diffusion 1.5's component configs (runwayml/stable-diffusion-v1-5), written out here.
UNET_CONFIG = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
TEXT_CONFIG = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "layer_norm_eps": 1e-5,
}
# The scheduler config SD 1.5 ships (PNDM); DDIM reads the same betas and offsets.
SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "clip_sample": False,
    "prediction_type": "epsilon",
    "trained_betas": None,
}


class Phases:
    """Wall seconds per phase, printed as each one ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        started = time.perf_counter()
        print(f"[{name}] …", flush=True)
        result = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - started, 1)
        print(f"[{name}] {self.seconds[name]:.1f} s", flush=True)
        return result


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def is_built(folder: Path) -> bool:
    return (folder / STAMP).is_file() and (folder.parent / REFERENCE).is_file() and all(
        (folder / name / "model.onnx").is_file() for name in COMPONENTS
    )


def build_torch(folder: Path, reference: Path) -> dict:
    """The three networks with seeded random weights, saved as a diffusers pipeline folder; the
    init check's inputs and PyTorch's outputs are kept in `reference` for the ONNX checks."""
    import numpy as np
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.set_num_threads(os.cpu_count() or 1)
    tokenizer = CLIPTokenizer.from_pretrained(str(TOKENIZER), model_max_length=77)
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            **TEXT_CONFIG,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    torch.manual_seed(SEED + 1)
    unet = UNet2DConditionModel(**UNET_CONFIG).eval()
    torch.manual_seed(SEED + 2)
    vae = AutoencoderKL(**VAE_CONFIG).eval()

    # PyTorch's default init is used as is; this checks that it gives a usable network: a finite
    # noise estimate of order one from a unit-normal latent and the text encoder's real output.
    # A 32×32 latent keeps the check to a few seconds; every level of the UNet still runs.
    check = torch.Generator().manual_seed(SEED + 3)
    ids = tokenizer("a photo of a cat", padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        text = text_encoder(ids.input_ids)[0]
        latent = torch.randn(1, 4, 32, 32, generator=check)
        eps = unet(latent, torch.tensor([999]), encoder_hidden_states=text).sample
        image = vae.decode(latent[:, :, :8, :8]).sample
    stats = {
        "textStd": float(text.std()),
        "unetOutStd": float(eps.std()),
        "unetOutMaxAbs": float(eps.abs().max()),
        "vaeOutStd": float(image.std()),
    }
    print(
        "  random init: text states std {textStd:.3f}; UNet ε std {unetOutStd:.3f}, "
        "max |ε| {unetOutMaxAbs:.3f}; VAE decode std {vaeOutStd:.3f}".format(**stats),
        flush=True,
    )
    if not all(torch.isfinite(t).all() for t in (text, eps, image)):
        raise SystemExit("random init gave a non-finite output; not exporting it")
    if not 1e-2 < stats["unetOutStd"] < 1e2:
        raise SystemExit(f"random init: UNet output std {stats['unetOutStd']:.3g} is not of order one")
    np.savez(
        reference,
        input_ids=ids.input_ids.numpy(),
        text=text.numpy(),
        latent=latent.numpy(),
        timestep=np.array([999], dtype=np.int64),
        eps=eps.numpy(),
        decoder_in=latent[:, :, :8, :8].numpy(),
        image=image.numpy(),
    )

    scheduler = PNDMScheduler.from_config(SCHEDULER_CONFIG)
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder)
    params = {
        name: sum(p.numel() for p in net.parameters())
        for name, net in (("unet", unet), ("text_encoder", text_encoder), ("vae", vae))
    }
    print(f"  parameters: {params}", flush=True)
    return {"initCheck": stats, "parameters": params}


def export_onnx(pt_folder: Path, out: Path) -> None:
    from optimum.exporters.onnx import main_export

    # optimum's own validation runs every network in PyTorch and in onnxruntime at full size
    # (a batch of two 512² images through the VAE): ten of this script's minutes on 2 cores.
    # check_onnx below compares the export with PyTorch on smaller inputs instead.
    main_export(str(pt_folder), output=str(out), task="stable-diffusion", device="cpu",
                do_validation=False)
    # The tokenizer exactly as the tiny fixture has it (the export re-saves it through
    # transformers, which adds nothing Retrace or diffusers need), its length pinned to 77.
    shutil.rmtree(out / "tokenizer")
    shutil.copytree(TOKENIZER, out / "tokenizer")
    config_file = out / "tokenizer" / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["model_max_length"] = 77
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def load_with_types(model_file: Path):
    """The model with every intermediate value's type inferred, weights loaded.

    onnx's shape inference serialises the model, which a >2 GB proto cannot be; so it runs on the
    graph with its weights still external (only their names, types and dims in the proto), and the
    weights are read in afterwards.
    """
    import onnx
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    model = onnx.load(str(model_file), load_external_data=False)
    model = onnx.shape_inference.infer_shapes(model)
    if any(uses_external_data(t) for t in model.graph.initializer):
        load_external_data_for_model(model, str(model_file.parent))
    return model


def fix_random_like(model) -> list[str]:
    """onnxconverter-common 1.14 turns the graph's float values into float16 but leaves a
    RandomNormalLike node's `dtype` attribute at 1 (float); onnxruntime then refuses the graph,
    since the node's declared output (now float16) and its dtype disagree. The VAE encoder has one
    (optimum's export samples the posterior). Its dtype is set to 10 (float16) here, so the node
    draws in the type its input and its consumers now have."""
    import onnx

    fixed = []
    for node in model.graph.node:
        if node.op_type not in ("RandomNormalLike", "RandomUniformLike"):
            continue
        for attr in node.attribute:
            if attr.name == "dtype" and attr.i == onnx.TensorProto.FLOAT:
                attr.i = onnx.TensorProto.FLOAT16
                fixed.append(node.name)
    return fixed


def convert_fp16(src: Path, dst: Path) -> dict:
    """One component: float16 weights and values, io types included; saved inline under 2 GB."""
    import onnx
    from onnxconverter_common import float16

    model = load_with_types(src / "model.onnx")
    # The converter warns once per tensor whose smallest or largest magnitude it clamps into
    # float16's range ([1e-7, 1e4] by default): hundreds of lines for the UNet. Counted instead.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = float16.convert_float_to_float16(
            model, keep_io_types=False, disable_shape_infer=True
        )
    clamped = sum("will be truncated" in str(w.message) for w in caught)
    fixed = fix_random_like(model)
    dst.mkdir(parents=True, exist_ok=True)
    for extra in src.iterdir():
        if extra.is_file() and not extra.name.startswith("model.onnx"):
            shutil.copy2(extra, dst / extra.name)
    external = model.ByteSize() >= PROTO_LIMIT
    onnx.save(
        model,
        str(dst / "model.onnx"),
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        location="model.onnx_data",
    )
    print(f"  {dst.name}: {clamped} clamping warnings (values below 1e-7 or above 1e4 in magnitude)",
          flush=True)
    return {"externalData": external, "randomLikeDtypeFixed": fixed, "clampWarnings": clamped}


def check_onnx(folder: Path, reference: Path) -> dict:
    """Opens each network of `folder` in onnxruntime (CPU) and runs it on the init check's inputs
    (a 32×32 latent for the UNet, 8×8 for the VAE decoder), in the element types the graph
    declares; the outputs are compared with PyTorch's (max |ONNX − PyTorch| ÷ max |PyTorch|).
    The VAE encoder samples its posterior (a RandomNormalLike node), so it is only checked for
    a finite output of the right shape."""
    import numpy as np
    import onnxruntime as ort

    ref = np.load(reference)
    feeds = {
        "unet": {"sample": ref["latent"], "timestep": ref["timestep"],
                 "encoder_hidden_states": ref["text"]},
        "text_encoder": {"input_ids": ref["input_ids"]},
        "vae_decoder": {"latent_sample": ref["decoder_in"]},
        "vae_encoder": {"sample": np.clip(ref["image"], -1, 1)},
    }
    expected = {"unet": ref["eps"], "text_encoder": ref["text"], "vae_decoder": ref["image"]}
    numpy_types = {"tensor(float16)": np.float16, "tensor(float)": np.float32,
                   "tensor(int64)": np.int64, "tensor(int32)": np.int32}
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    report = {}
    for name in COMPONENTS:
        started = time.perf_counter()
        session = ort.InferenceSession(
            str(folder / name / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        types = {i.name: i.type for i in session.get_inputs()}
        typed = {k: v.astype(numpy_types[types[k]]) for k, v in feeds[name].items()}
        out = session.run(None, typed)[0]
        values = out.astype(np.float32)
        if not np.isfinite(values).all():
            raise SystemExit(f"{folder / name}: non-finite output in onnxruntime")
        row = {"inputs": types, "output": f"{out.dtype} {list(out.shape)}",
               "seconds": round(time.perf_counter() - started, 2)}
        if name in expected:
            want = expected[name]
            if values.shape != want.shape:
                raise SystemExit(f"{folder / name}: output {values.shape}, PyTorch {want.shape}")
            row["maxAbsDiffVsTorch"] = float(np.abs(values - want).max())
            row["relativeToMaxAbs"] = row["maxAbsDiffVsTorch"] / float(np.abs(want).max())
        report[name] = row
        diff = (f", max |onnx − torch| {row['maxAbsDiffVsTorch']:.3g} "
                f"({row['relativeToMaxAbs']:.2%} of max |torch|)") if name in expected else ""
        print(f"  {name}: {types} → {row['output']}{diff}", flush=True)
        del session
    return report


def write_stamp(folder: Path, info: dict) -> None:
    info = {**info, "bytes": folder_bytes(folder), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (folder / STAMP).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def build_fp32(target: Path, phases: Phases) -> dict:
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    reference = target.parent / REFERENCE
    with tempfile.TemporaryDirectory(prefix="sd15-random-", dir=target.parent) as tmp:
        built = phases.run("build + save_pretrained", build_torch, Path(tmp) / "pt", reference)
        phases.run("export fp32 (optimum)", export_onnx, Path(tmp) / "pt", partial)
    built["onnxruntimeCheck"] = phases.run(
        "check fp32 (onnxruntime CPU)", check_onnx, partial, reference
    )
    info = {
        "what": "Stable Diffusion 1.5 architecture, random seeded weights (not a trained model)",
        "seed": SEED,
        "dtype": "float32",
        "unet": UNET_CONFIG,
        "vae": VAE_CONFIG,
        "textEncoder": TEXT_CONFIG,
        "scheduler": SCHEDULER_CONFIG,
        "tokenizer": "test/fixtures/tiny-sd/tokenizer",
        **built,
    }
    info["phaseSeconds"] = dict(phases.seconds)
    write_stamp(partial, info)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return info


def build_fp16(source: Path, target: Path, phases: Phases) -> dict:
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for item in source.iterdir():
        if item.name in COMPONENTS or item.name == STAMP:
            continue
        if item.is_dir():
            shutil.copytree(item, partial / item.name)
        else:
            shutil.copy2(item, partial / item.name)
    converted = {}
    for name in COMPONENTS:
        converted[name] = phases.run(
            f"fp16 {name}", convert_fp16, source / name, partial / name
        )
        if converted[name]["randomLikeDtypeFixed"]:
            print(f"  {name}: RandomNormalLike dtype set to float16 "
                  f"({', '.join(converted[name]['randomLikeDtypeFixed'])})", flush=True)
    checks = phases.run(
        "check fp16 (onnxruntime CPU)", check_onnx, partial, target.parent / REFERENCE
    )
    info = {
        **json.loads((source / STAMP).read_text(encoding="utf-8")),
        "dtype": "float16",
        "convertedFrom": str(source),
        "converter": "onnxconverter-common float16.convert_float_to_float16(keep_io_types=False)",
        "converted": converted,
        "onnxruntimeCheck": checks,
    }
    for key in ("bytes", "date"):
        info.pop(key, None)
    info["phaseSeconds"] = dict(phases.seconds)
    write_stamp(partial, info)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT,
                        help=f"fixture root; fp32/ and fp16/ are made in it (default {OUT})")
    parser.add_argument("--skip-fp16", action="store_true", help="build only the fp32 folder")
    parser.add_argument("--force", action="store_true", help="rebuild folders that are complete")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    fp32, fp16 = out / "fp32", out / "fp16"
    phases = Phases()
    started = time.perf_counter()

    if is_built(fp32) and not args.force:
        print(f"{fp32}: already built (--force rebuilds it)")
    else:
        build_fp32(fp32, phases)
        print(f"{fp32}: {folder_bytes(fp32) / 2**30:.2f} GiB", flush=True)

    if args.skip_fp16:
        print("fp16: skipped (--skip-fp16)")
    elif is_built(fp16) and not args.force:
        print(f"{fp16}: already built (--force rebuilds it)")
    else:
        build_fp16(fp32, fp16, phases)
        print(f"{fp16}: {folder_bytes(fp16) / 2**30:.2f} GiB", flush=True)

    total = time.perf_counter() - started
    for name, seconds in phases.seconds.items():
        print(f"  {name:<34} {seconds:8.1f} s")
    print(f"  {'total':<34} {total:8.1f} s")


if __name__ == "__main__":
    main()
