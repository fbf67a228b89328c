"""Export Shapes checkpoints as `retrace-pack/1` packs, with torch <-> ONNX parity vectors.

Each network becomes its own ONNX graph with the I/O names of the diffusers ONNX exports
(ARCHITECTURE.md), so the engine treats the pack like a Stable Diffusion folder; the sampling loop
stays in the engine. The parity file holds, for every graph, inputs and the torch outputs, plus a
10-step guided DDIM latent from fixed noise, and is checked here against onnxruntime before the
pack is accepted (and again by the engine's integration test).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from common.onnx_io import export_onnx, ort_session
from common.packs import folder_bytes, write_pack_json
from common.vectors import write_vectors

from . import config
from .model import ShapesModel, ddim_sample, load_model, sampling_levels

Log = Callable[[str], None]

PARITY_PROMPT = "a red circle left of a blue square"
PARITY_STEPS = 10
PARITY_FORMAT = "retrace-parity/1"
# Per-graph torch <-> onnxruntime tolerance (ALGORITHMS.md §4: ~1e-4 per graph).
GRAPH_TOLERANCE = 1e-4
# The 10-step DDIM latent compounds ten float32 UNet calls; states are float64 on both sides.
DDIM_TOLERANCE = 1e-3
PACK_BUDGET_BYTES = 10 * 2**20

DEFAULTS = {"steps": 20, "guidance": 5.0, "gamma": 0.94, "strength": 0.8, "timeShift": None}
PACKS = {
    "shapes-base": {"name": "Shapes · base", "rl": None,
                    "description": "A tiny text-to-image latent diffusion model trained on the "
                                   "synthetic Shapes world (coloured circles, squares, triangles)."},
    "shapes-b2": {"name": "Shapes · B²-DiffuRL tuned", "rl": "b2",
                  "description": "shapes-base fine-tuned with B²-DiffuRL against the Shapes "
                                 "detector reward (prompt alignment)."},
    "shapes-ddpo": {"name": "Shapes · DDPO tuned", "rl": "ddpo",
                    "description": "shapes-base fine-tuned with DDPO at the same number of reward "
                                   "queries as shapes-b2 (the baseline)."},
}


class _TextEncoder(nn.Module):
    def __init__(self, model: ShapesModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(input_ids)


class _UNet(nn.Module):
    def __init__(self, model: ShapesModel):
        super().__init__()
        self.model = model

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        return self.model.eps(sample, timestep, states)


class _VaeEncoder(nn.Module):
    """Posterior mean, unscaled: the engine multiplies by pack.json's latent.scale itself."""

    def __init__(self, model: ShapesModel):
        super().__init__()
        self.model = model

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        return self.model.vae.encode(sample)[0]


class _VaeDecoder(nn.Module):
    def __init__(self, model: ShapesModel):
        super().__init__()
        self.model = model

    def forward(self, latent_sample: torch.Tensor) -> torch.Tensor:
        return self.model.vae.decode(latent_sample)


def write_tokenizer(model: ShapesModel, path: Path) -> Path:
    """tokenizer.json: WordLevel + Lowercase + Whitespace, pad id 0 to max_length, truncation."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordLevel(dict(model.vocab), unk_token=config.UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.enable_truncation(max_length=model.max_length)
    tok.enable_padding(pad_id=0, pad_token=config.PAD, length=model.max_length)
    tok.save(str(path))
    return path


def check_tokenizer(model: ShapesModel, path: Path) -> None:
    """The saved tokenizer.json must give exactly ShapesModel.tokenize's ids for every prompt."""
    from tokenizers import Tokenizer

    from .world import all_prompts

    tok = Tokenizer.from_file(str(path))
    probes = all_prompts("train") + all_prompts("heldout") + [
        "", "A  RED circle", "a purple circle, left of a blue square!", "a red circle " * 5]
    for prompt in probes:
        theirs, ours = tok.encode(prompt).ids, model.token_ids(prompt)
        if theirs != ours:
            raise AssertionError(f"{path}: tokenizer.json gives {theirs} for {prompt!r}, the model {ours}")


def _parity_inputs(model: ShapesModel, seed: int = 0) -> dict[str, np.ndarray]:
    from .world import render_scene

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    c = model.cfg.latent_channels
    scenes = np.stack([render_scene(rng, PARITY_PROMPT), render_scene(rng, "a yellow triangle")])
    return {
        "input_ids": model.tokenize([PARITY_PROMPT, ""]).numpy().astype(np.int32),
        "unet_sample": torch.randn((2, c, 16, 16), generator=gen).numpy(),
        "timestep": np.array([999, 421], dtype=np.int64),
        "vae_sample": (scenes.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0),
        "ddim_noise": torch.randn((1, c, 16, 16), generator=gen).numpy(),
    }


def _ort_ddim(sessions: dict, ids: np.ndarray, noise: np.ndarray, abar: np.ndarray,
              steps: int, guidance: float) -> np.ndarray:
    """The engine's guided DDIM loop on onnxruntime sessions (float64 states, float32 feeds)."""
    states = sessions["text_encoder"].run(None, {"input_ids": ids})[0]  # rows: [cond, uncond]
    ctx = np.concatenate([states[1:2], states[0:1]])  # unconditional first, as the engine batches
    levels = sampling_levels(steps, len(abar))
    z = noise.astype(np.float64)
    for k in range(steps, 0, -1):
        a_from, a_to = abar[max(levels[k], 0)], abar[max(levels[k - 1], 0)]
        feed = np.concatenate([z, z]).astype(np.float32)
        out = sessions["unet"].run(None, {"sample": feed, "timestep": np.full(2, levels[k], np.int64),
                                          "encoder_hidden_states": ctx})[0].astype(np.float64)
        e = out[:1] + guidance * (out[1:] - out[:1])
        x0 = (z - np.sqrt(1 - a_from) * e) / np.sqrt(a_from)
        z = np.sqrt(a_to) * x0 + np.sqrt(1 - a_to) * e
    return z


def export_networks(model: ShapesModel, folder: Path, inputs: dict[str, np.ndarray]) -> dict[str, Path]:
    model = model.eval().cpu()
    with torch.no_grad():
        states = model.encode_text(torch.from_numpy(inputs["input_ids"]).long()).numpy()
    batch = {0: "batch"}
    files = {
        "text_encoder": export_onnx(_TextEncoder(model), {"input_ids": inputs["input_ids"]},
                                    folder / "text_encoder.onnx", ["last_hidden_state"],
                                    {"input_ids": {0: "batch", 1: "sequence"},
                                     "last_hidden_state": {0: "batch", 1: "sequence"}}),
        "unet": export_onnx(_UNet(model), {"sample": inputs["unet_sample"], "timestep": inputs["timestep"],
                                           "encoder_hidden_states": states},
                            folder / "unet.onnx", ["out_sample"],
                            {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": batch,
                             "encoder_hidden_states": {0: "batch", 1: "sequence"},
                             "out_sample": {0: "batch", 2: "height", 3: "width"}}),
        "vae_encoder": export_onnx(_VaeEncoder(model), {"sample": inputs["vae_sample"]},
                                   folder / "vae_encoder.onnx", ["latent_sample"],
                                   {"sample": {0: "batch", 2: "height", 3: "width"},
                                    "latent_sample": {0: "batch", 2: "height", 3: "width"}}),
    }
    with torch.no_grad():
        latent = model.vae.encode(torch.from_numpy(inputs["vae_sample"]))[0].numpy()
    files["vae_decoder"] = export_onnx(_VaeDecoder(model), {"latent_sample": latent},
                                       folder / "vae_decoder.onnx", ["sample"],
                                       {"latent_sample": {0: "batch", 2: "height", 3: "width"},
                                        "sample": {0: "batch", 2: "height", 3: "width"}})
    return files


def parity_vectors(model: ShapesModel, folder: Path, inputs: dict[str, np.ndarray], pack_id: str,
                   guidance: float) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, float]]:
    """Torch reference outputs for every graph and the DDIM latent, checked against onnxruntime."""
    model = model.eval().cpu()
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    with torch.no_grad():
        states = model.encode_text(t(inputs["input_ids"]).long()).numpy()
        unet_out = model.eps(t(inputs["unet_sample"]), t(inputs["timestep"]), t(states)).numpy()
        latent = model.vae.encode(t(inputs["vae_sample"]))[0].numpy()
        decoded = model.vae.decode(t(latent)).numpy()
    expected = ddim_sample(model, [PARITY_PROMPT], t(inputs["ddim_noise"]), PARITY_STEPS, guidance).numpy()
    tensors = {
        "text_encoder.input_ids": inputs["input_ids"],
        "text_encoder.last_hidden_state": states,
        "unet.sample": inputs["unet_sample"], "unet.timestep": inputs["timestep"],
        "unet.encoder_hidden_states": states, "unet.out_sample": unet_out,
        "vae_encoder.sample": inputs["vae_sample"], "vae_encoder.latent_sample": latent,
        "vae_decoder.latent_sample": latent, "vae_decoder.sample": decoded,
        "ddim.noise": inputs["ddim_noise"], "ddim.expected_latent": expected,
    }
    sessions = {name: ort_session(folder / f"{name}.onnx")
                for name in ("text_encoder", "unet", "vae_encoder", "vae_decoder")}
    checks = {
        "text_encoder": (sessions["text_encoder"].run(None, {"input_ids": inputs["input_ids"]})[0], states),
        "unet": (sessions["unet"].run(None, {"sample": inputs["unet_sample"], "timestep": inputs["timestep"],
                                             "encoder_hidden_states": states})[0], unet_out),
        "vae_encoder": (sessions["vae_encoder"].run(None, {"sample": inputs["vae_sample"]})[0], latent),
        "vae_decoder": (sessions["vae_decoder"].run(None, {"latent_sample": latent})[0], decoded),
        "ddim": (_ort_ddim(sessions, inputs["input_ids"], inputs["ddim_noise"],
                           model.alphas_cumprod.numpy(), PARITY_STEPS, guidance), expected),
    }
    errors = {k: float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) for k, (a, b) in checks.items()}
    for name, err in errors.items():
        tol = DDIM_TOLERANCE if name == "ddim" else GRAPH_TOLERANCE
        if not err <= tol:
            raise AssertionError(f"{pack_id}: {name} torch/onnxruntime max difference {err:.3g} > {tol:g}")
    metadata = {"format": PARITY_FORMAT, "pack": pack_id, "ddim.prompt": PARITY_PROMPT,
                "ddim.guidance": repr(float(guidance)), "ddim.steps": str(PARITY_STEPS),
                "ddim.eta": "0", "ddim.negative_prompt": "",
                "tolerance.graph": repr(GRAPH_TOLERANCE), "tolerance.ddim": repr(DDIM_TOLERANCE)}
    return tensors, metadata, errors


def manifest(model: ShapesModel, pack_id: str, defaults: dict, tuning: dict | None) -> dict:
    info = PACKS[pack_id]
    out = {
        "id": pack_id, "name": info["name"], "description": info["description"], "version": "1.0.0",
        "task": "text-to-image", "space": "latent",
        # Two 2x down-samplings in the VAE and two more in the UNet: sizes must divide by 16.
        "resolution": {"default": [64, 64], "multipleOf": 16},
        "schedule": dict(config.SCHEDULE), "prediction": "epsilon", "timestepInput": "int64",
        "components": {"unet": {"file": "unet.onnx"}, "textEncoder": {"file": "text_encoder.onnx"},
                       "vaeEncoder": {"file": "vae_encoder.onnx"}, "vaeDecoder": {"file": "vae_decoder.onnx"},
                       "tokenizer": {"file": "tokenizer.json", "maxLength": model.max_length}},
        "latent": {"channels": model.cfg.latent_channels, "downsample": 4, "scale": model.latent_scale},
        "defaults": {k: v for k, v in defaults.items()},
        "licence": "MIT (trained from scratch on synthetic data by the Retrace model factory)",
    }
    if tuning:
        out["tuning"] = tuning
    return out


def export_pack(checkpoint: Path, folder: Path, pack_id: str, vectors: Path, log: Log,
                defaults: dict | None = None, tuning: dict | None = None) -> dict:
    """Build the pack in a temporary sibling folder, check it, then swap it into `folder`."""
    defaults = {**DEFAULTS, **(defaults or {})}
    model = load_model(checkpoint, "cpu")
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    inputs = _parity_inputs(model)
    export_networks(model, tmp, inputs)
    check_tokenizer(model, write_tokenizer(model, tmp / "tokenizer.json"))
    tensors, metadata, errors = parity_vectors(model, tmp, inputs, pack_id, defaults["guidance"])
    # Keep what a previous card stage wrote (card, eval, figures); the networks are replaced.
    if folder.is_dir():
        for f in folder.iterdir():
            if f.is_file() and f.suffix in (".md", ".png", ".json") and f.name != "pack.json":
                shutil.copy2(f, tmp / f.name)
    man = manifest(model, pack_id, defaults, tuning)
    if (tmp / "MODEL_CARD.md").is_file():
        man["modelCard"] = "MODEL_CARD.md"
    write_pack_json(tmp, man)
    size = folder_bytes(tmp)
    if size > PACK_BUDGET_BYTES:
        raise AssertionError(f"{pack_id}: pack is {size / 2**20:.1f} MiB, over the 10 MiB budget")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    vectors.parent.mkdir(parents=True, exist_ok=True)
    vtmp = vectors.with_name(vectors.name + ".tmp")
    write_vectors(vtmp, tensors, metadata)
    vtmp.replace(vectors)
    log(f"exported {pack_id} -> {folder} ({size / 2**20:.2f} MiB); parity "
        + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    return {"pack": pack_id, "bytes": size, "parity": errors}


def rl_checkpoint(rl_dir: Path, method: str) -> tuple[Path | None, dict]:
    """The checkpoint of `method` to ship: the one C's summary.json names under `export` (the seed
    best on *seen* prompts, so held-out prompts stay a test set), else the first seed; (None, {})
    when the RL stage has not produced one."""
    summary_path = rl_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    named = summary.get("export", {}).get(method) if isinstance(summary, dict) else None
    if isinstance(named, str) and (rl_dir / named).is_file():
        return rl_dir / named, summary
    seeds = sorted(rl_dir.glob(f"{method}-seed*/model.pt"))
    return (seeds[0] if seeds else None), summary


def tuning_block(ckpt: Path, method: str) -> dict:
    """pack.json's `tuning`: method, base, reward, the run's reward queries and final metrics."""
    history_path = ckpt.parent / "history.json"
    history = json.loads(history_path.read_text()) if history_path.is_file() else {}
    block = {"method": "b2-diffurl" if method == "b2" else "ddpo", "base": "shapes-base",
             "reward": "Shapes detector: 1 when the image shows exactly the prompt's objects in its relation, else 0",
             "metrics": {k: v for k, v in history.get("final", {}).items() if isinstance(v, (int, float))},
             "recipe": f"models/factory/shapes/rl, run {ckpt.parent.name}"}
    if isinstance(history.get("queries"), int):
        block["queries"] = history["queries"]
    return block


def export_all(base: Path, rl_dir: Path, packs: Path, parity: Path, log: Log, smoke: bool = False,
               defaults: dict | None = None) -> dict:
    """Export shapes-base, and shapes-b2 / shapes-ddpo where the RL stage left checkpoints."""
    results = {"shapes-base": export_pack(base, packs / "shapes-base", "shapes-base",
                                          parity / "shapes-base.safetensors", log, defaults)}
    for pack_id in ("shapes-b2", "shapes-ddpo"):
        method = PACKS[pack_id]["rl"]
        ckpt, _ = rl_checkpoint(rl_dir, method)
        if ckpt is None:
            log(f"{pack_id}: no {method} checkpoint under {rl_dir}; not exported")
            continue
        results[pack_id] = export_pack(ckpt, packs / pack_id, pack_id, parity / f"{pack_id}.safetensors",
                                       log, defaults, tuning_block(ckpt, method))
    total = sum(r["bytes"] for r in results.values())
    log(f"Shapes packs together: {total / 2**20:.2f} MiB")
    if total > 40 * 2**20:
        raise AssertionError(f"Shapes packs total {total / 2**20:.1f} MiB, over the 40 MiB budget")
    return results
