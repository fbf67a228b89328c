"""Rebuild each run's full checkpoint from the base and its tuned weights.

The GPU machine returns only a few files, so a run comes back as its UNet (`unet.pt`, full
fine-tuning) or its LoRA adapter (`adapter.pt`); putting it into the base here reproduces the
evaluated weights, which the UNet digest recorded in `history.json` confirms.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import torch

from .lora import apply_adapter
from .train import unet_sha256


def rebuild_all(base_path: Path, out: Path, log: Callable[[str], None]) -> list[Path]:
    from ..model import load_model, save_model

    written = []
    for history_path in sorted(Path(out).glob("*/history.json")):
        run_dir = history_path.parent
        history = json.loads(history_path.read_text())
        if history["method"] == "base":
            continue
        model = load_model(base_path, "cpu")
        if (run_dir / "unet.pt").is_file():
            blob = torch.load(run_dir / "unet.pt", map_location="cpu")
            if not isinstance(blob, dict) or blob.get("format") != "shapes-unet/1":
                raise ValueError(f"{run_dir / 'unet.pt'}: not a Shapes UNet file (format field)")
            model.unet.load_state_dict(blob["state"])
        elif (run_dir / "adapter.pt").is_file():
            blob = torch.load(run_dir / "adapter.pt", map_location="cpu")
            if not isinstance(blob, dict) or blob.get("format") != "shapes-lora/1":
                raise ValueError(f"{run_dir / 'adapter.pt'}: not a Shapes LoRA adapter (format field)")
            apply_adapter(model.unet, blob["state"])
        else:
            log(f"rl rebuild: {run_dir.name} has no unet.pt or adapter.pt here; skipped")
            continue
        digest = unet_sha256(model)
        if digest != history["unet_sha256"]:
            raise ValueError(f"{run_dir}: rebuilt UNet digest {digest[:12]} differs from the "
                             f"evaluated one {history['unet_sha256'][:12]} (wrong base checkpoint?)")
        written.append(save_model(model, run_dir / "model.pt",
                                  extra={"method": history["method"], "seed": history["seed"],
                                         "queries": history["queries"], "unet_sha256": digest}))
        log(f"rl rebuild: {run_dir.name}/model.pt (UNet digest {digest[:12]} matches)")
    return written


# ------------------------------------------------------------------ a checkpoint from an ONNX pack

# Which ShapesModel part each exported graph holds (export.py's wrappers), and the prefix its
# node scopes lack: the VAE graphs name their nodes from inside `vae`.
_PACK_GRAPHS = {"text_encoder": "", "unet": "", "vae_encoder": "vae.", "vae_decoder": "vae."}


def _module_path(node_name: str) -> str:
    """'/unet/down_attn.0/ff/ff.0/MatMul' -> 'unet.down_attn.0.ff.0' (a Sequential's scope
    repeats its own name before the child's dotted one: 'ff/ff.0')."""
    parts = [p for p in node_name.split("/") if p][:-1]
    kept = [p for i, p in enumerate(parts)
            if not (i + 1 < len(parts) and parts[i + 1].startswith(p + "."))]
    path = ".".join(kept)
    # The text encoder's layers are ModuleDicts, which leave no scope of their own: layer k's
    # modules appear as 'attn/q', 'attn/q_1', ... (the k-th call of that name).
    if kept and kept[0] == "text_encoder" and len(kept) > 1:
        calls = [int(m.group(1)) for m in (re.search(r"_(\d+)$", p) for p in kept[1:]) if m]
        layer = max(calls, default=0)
        inner = [re.sub(r"_\d+$", "", p) for p in kept[1:]]
        path = ".".join(["text_encoder", "layers", str(layer), *inner])
    return path


def model_from_pack(pack_dir: str | Path):
    """Rebuild a ShapesModel (float32 weights) from an exported `retrace-pack/1` Shapes pack.

    Named ONNX initializers are the module's parameters under `model.`; constant folding renamed
    the rest, which the consuming node's scope identifies: a MatMul's weight is the transposed
    Linear weight, a Mul/Add's (C,1,1) tensor a GroupNorm's weight/bias. Every parameter must be
    assigned exactly once with its own shape, or this raises.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from .. import config
    from ..config import NetConfig
    from ..model import ShapesModel

    pack_dir = Path(pack_dir)
    pack = json.loads((pack_dir / "pack.json").read_text())
    vocab_map = json.loads((pack_dir / "tokenizer.json").read_text())["model"]["vocab"]
    vocab = [w for w, _ in sorted(vocab_map.items(), key=lambda kv: kv[1])]
    cfg = NetConfig(vocab=vocab, latent_channels=int(pack["latent"]["channels"]),
                    max_length=int(pack["components"]["tokenizer"]["maxLength"]))
    model = ShapesModel(cfg, float(pack["latent"]["scale"]))
    state = model.state_dict()
    wanted = {k for k in state if k != "alphas_cumprod"}
    assigned: dict[str, torch.Tensor] = {}

    def put(key: str, value) -> None:
        t = torch.from_numpy(np.array(value, dtype=np.float32, copy=True))
        if key not in state:
            raise ValueError(f"{pack_dir}: ONNX tensor maps to unknown parameter {key}")
        if tuple(t.shape) != tuple(state[key].shape):
            raise ValueError(f"{pack_dir}: {key} has shape {tuple(t.shape)} in the pack, "
                             f"{tuple(state[key].shape)} in the model")
        if key in assigned and not torch.equal(assigned[key], t):
            raise ValueError(f"{pack_dir}: {key} appears twice with different values")
        assigned[key] = t

    for graph, prefix in _PACK_GRAPHS.items():
        proto = onnx.load(str(pack_dir / f"{graph}.onnx"))
        inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
        for name, value in inits.items():
            if name.startswith("model."):
                put(name[len("model."):], value)
        for node in proto.graph.node:
            for inp in node.input:
                if inp not in inits or inp.startswith("model.") or inits[inp].ndim == 0:
                    continue
                path = prefix + _module_path(node.name)
                value = inits[inp]
                if node.op_type == "MatMul" and value.ndim == 2:
                    put(path + ".weight", value.T)
                elif node.op_type in ("Mul", "Add") and value.ndim == 3 and value.shape[1:] == (1, 1):
                    put(path + (".weight" if node.op_type == "Mul" else ".bias"), value.reshape(-1))
                else:
                    raise ValueError(f"{pack_dir}/{graph}.onnx: cannot place {inp} "
                                     f"{tuple(value.shape)} used by {node.name} ({node.op_type})")
    missing = sorted(wanted - set(assigned))
    if missing:
        raise ValueError(f"{pack_dir}: the pack lacks {len(missing)} parameters, e.g. {missing[:4]}")
    model.load_state_dict({**state, **assigned})
    if pack.get("schedule") != config.SCHEDULE:
        raise ValueError(f"{pack_dir}: schedule {pack.get('schedule')} is not the Shapes one")
    return model.eval()


def pack_parity(model, pack_dir: str | Path) -> dict[str, float]:
    """Max |torch − onnxruntime| of the rebuilt model's UNet and text encoder on seeded feeds."""
    import numpy as np

    from common.onnx_io import ort_session

    pack_dir = Path(pack_dir)
    gen = torch.Generator().manual_seed(0)
    ids = model.tokenize(["a red circle left of a blue square", ""])
    with torch.no_grad():
        states = model.encode_text(ids)
        z = torch.randn((2, model.cfg.latent_channels, 16, 16), generator=gen)
        t = torch.tensor([999, 421])
        eps = model.eps(z, t, states)
        img = model.vae.decode(z)
    text = ort_session(pack_dir / "text_encoder.onnx", threads=1).run(
        None, {"input_ids": ids.numpy().astype(np.int32)})[0]
    unet = ort_session(pack_dir / "unet.onnx", threads=1).run(
        None, {"sample": z.numpy(), "timestep": t.numpy(), "encoder_hidden_states": states.numpy()})[0]
    dec = ort_session(pack_dir / "vae_decoder.onnx", threads=1).run(
        None, {"latent_sample": z.numpy()})[0]
    return {"text_encoder": float(np.abs(text - states.numpy()).max()),
            "unet": float(np.abs(unet - eps.numpy()).max()),
            "vae_decoder": float(np.abs(dec - img.numpy()).max())}


def ensure_base_from_pack(path: str | Path, pack_dir: str | Path, log: Callable[[str], None],
                          tolerance: float = 1e-4) -> Path:
    """`path` if it exists, else the checkpoint rebuilt from the pack (checked against
    onnxruntime to `tolerance` per graph) written there."""
    from ..model import save_model

    path = Path(path)
    if path.is_file():
        return path
    model = model_from_pack(pack_dir)
    diffs = pack_parity(model, pack_dir)
    if max(diffs.values()) > tolerance:
        raise ValueError(f"rebuilt {pack_dir} differs from onnxruntime: {diffs}")
    log(f"rebuilt {path} from {pack_dir} (max |torch - onnxruntime|: {diffs})")
    return save_model(model, path, extra={"rebuilt_from": str(pack_dir), "parity": diffs})
