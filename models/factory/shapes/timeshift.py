"""Time-Shift measured on a Shapes model: does re-labelling each state's timestep help here?

The sampler mirrors `electron/engine/schedulers/time-shift.ts` step for step (ALGORITHMS.md §2):
the engine's level grid, candidates [c − h, c + h] strictly between the neighbouring grid levels,
no shift at or below the cutoff, the first network call never shifted, paper semantics by default
(the next call and the next update's "from" use τ), the released code's shifted target, and our
data-variance target ᾱ_τ·v̂0 + 1 − ᾱ_τ. States are float64, the network sees float32, as in the
engine. `measure` samples every setting from the same noise and prompts, and reports Fréchet
distance to rendered scenes (features.py) and detector alignment, with paired bootstrap errors
against plain DDIM; `python -m shapes.timeshift --model PATH --out FILE` writes the table.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import detector, features, world
from .config import BASE_CHECKPOINT, TIMESHIFT_TABLE

VARIANTS = ("off", "paper", "released-code", "data-variance")
FORMAT = "shapes-timeshift/1"


def sampling_levels(steps: int, train_steps: int = 1000, offset: int = 0) -> list[int]:
    """The engine's `samplingLevels`: [t_0 − stride, t_0, …, t_{N−1}], t_i = i·⌊T/N⌋ + offset."""
    if not (isinstance(steps, int) and 1 <= steps <= train_steps):
        raise ValueError(f"steps must be an integer in [1, {train_steps}], got {steps}")
    stride = train_steps // steps
    return [(k - 1) * stride + offset for k in range(steps + 1)]


def sample_variance(row: np.ndarray) -> float:
    """Variance of all entries of one sample, float64, N − 1 divisor (two-pass, as the engine)."""
    row = np.asarray(row, dtype=np.float64).ravel()
    mean = row.sum() / row.size
    return float(((row - mean) ** 2).sum() / (row.size - 1))


def shifted_timestep(abar: np.ndarray, variance: float, nominal: int, below: int | None,
                     above: int | None, window: int, cutoff: int, data_variance: float = 0.0) -> int:
    """The engine's `shiftedTimestep`: argmin over τ ∈ [c − h, c + h] ∩ [0, T − 1] ∩ (below, above)
    of (v − (ᾱ_τ·v̂0 + 1 − ᾱ_τ))², ties to the smallest τ; c itself when c ≤ cutoff or c < 0."""
    if nominal <= cutoff or nominal < 0:
        return nominal
    h = window // 2
    lo = max(nominal - h, 0, (below + 1) if below is not None else 0)
    hi = min(nominal + h, len(abar) - 1, (above - 1) if above is not None else len(abar) - 1)
    if lo > hi:
        return nominal
    a = abar[lo:hi + 1]
    d = variance - (a * data_variance + 1 - a)
    return lo + int(np.argmin(d * d))  # argmin returns the first minimum: the smallest τ


@dataclass(frozen=True)
class Setting:
    """One sampler configuration of the table; variant 'off' is plain DDIM."""
    steps: int
    variant: str = "off"
    window: int = 0
    cutoff: int = 0

    @property
    def label(self) -> str:
        if self.variant == "off":
            return f"DDIM {self.steps}"
        return f"DDIM {self.steps} + TS {self.variant} w={self.window} c={self.cutoff}"


@torch.no_grad()
def sample_latents(model, prompts: list[str], noise: torch.Tensor, steps: int, guidance: float,
                   window: int = 0, cutoff: int = 0, variant: str = "paper",
                   ) -> tuple[torch.Tensor, list[list[int]]]:
    """DDIM (η = 0) with Time-Shift per row, as the engine's `sampleTimeShift`; `window` 0 is plain
    DDIM bit for bit. Returns the final latents (float64) and, per step, each row's level."""
    from .model import guided_eps

    if variant not in VARIANTS[1:]:
        raise ValueError(f"time-shift variant must be one of {VARIANTS[1:]}, got {variant!r}")
    if not (isinstance(window, int) and window >= 0):
        raise ValueError(f"time-shift window must be a non-negative integer, got {window}")
    device = model.device
    abar_t = model.alphas_cumprod.to(torch.float64)
    abar = abar_t.cpu().numpy()
    levels = sampling_levels(steps, len(abar))
    batch = noise.shape[0]
    cond = model.encode_text(model.tokenize(prompts))
    uncond = model.encode_text(model.tokenize([""] * batch))

    def candidates(k: int) -> tuple[int, int | None, int | None]:
        return levels[k], (levels[k - 1] if k > 0 else None), levels[k + 1]

    def abar_at(times: list[int]) -> torch.Tensor:
        return abar_t[[max(t, 0) for t in times]].view(-1, 1, 1, 1)

    z = noise.to(device=device, dtype=torch.float64)
    current = [levels[steps]] * batch
    shifted: list[list[int]] = []
    for k in range(steps, 0, -1):
        first = k == steps
        call = [levels[k]] * batch if variant == "released-code" else current
        t = torch.tensor(call, dtype=torch.long, device=device)
        e = guided_eps(model, z.float(), t, cond, uncond, guidance).double()
        targets = [levels[k - 1]] * batch
        if variant == "released-code" and not first and window > 0:
            z_np = z.cpu().numpy()
            targets = [shifted_timestep(abar, sample_variance(z_np[b]), *candidates(k - 1),
                                        window, cutoff) for b in range(batch)]
        a_from, a_to = abar_at(call), abar_at(targets)
        x0 = (z - (1 - a_from).sqrt() * e) / a_from.sqrt()
        z = a_to.sqrt() * x0 + (1 - a_to - 0.0).sqrt() * e
        if variant != "released-code" and k > 1 and window > 0:
            z_np, x0_np = z.cpu().numpy(), x0.cpu().numpy()
            targets = [shifted_timestep(
                abar, sample_variance(z_np[b]), *candidates(k - 1), window, cutoff,
                sample_variance(x0_np[b]) if variant == "data-variance" else 0.0)
                for b in range(batch)]
        current = targets
        shifted.append(targets)
    return z, shifted


@torch.no_grad()
def generate(model, prompts: list[str], noise: torch.Tensor, setting: Setting, guidance: float,
             batch: int = 128) -> tuple[np.ndarray, dict]:
    """uint8 images for one setting, and shift statistics (how often and how far τ moved)."""
    from .model import to_uint8

    images, moves = [], []
    levels = sampling_levels(setting.steps, len(model.alphas_cumprod))
    for i in range(0, len(prompts), batch):
        chunk = noise[i:i + batch]
        variant = "paper" if setting.variant == "off" else setting.variant
        z, shifted = sample_latents(model, prompts[i:i + batch], chunk, setting.steps, guidance,
                                    setting.window, setting.cutoff, variant)
        images.append(to_uint8(model.decode(z.float())))
        # shifted[j] is where step j's output is taken to be; its nominal level is levels[K−1−j].
        for j, row in enumerate(shifted[:-1]):
            nominal = levels[setting.steps - 1 - j]
            moves.extend(tau - nominal for tau in row)
    moves_np = np.array(moves or [0])
    stats = {"shifted_fraction": float((moves_np != 0).mean()),
             "mean_shift": float(moves_np.mean()), "mean_abs_shift": float(np.abs(moves_np).mean())}
    return np.concatenate(images), stats


class OnnxNetworks(torch.nn.Module):
    """A ShapesModel whose UNet and VAE decoder run from its exported pack with onnxruntime.

    On this factory's CPU the ONNX UNet is ~5× faster than Debian's torch, which decides whether
    a Time-Shift table fits in minutes. Text encoding stays in torch. The pack must be the
    checkpoint's export: construction checks ε and decoding against torch (`tolerance`).
    """

    def __init__(self, model, pack_dir: str | Path, threads: int = 2, tolerance: float = 2e-3):
        super().__init__()
        import onnxruntime as ort

        self.model = model
        self.cfg, self.latent_scale = model.cfg, model.latent_scale
        self.register_buffer("alphas_cumprod", model.alphas_cumprod.detach().cpu())
        pack_dir = Path(pack_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads

        def session(name: str):
            path = pack_dir / name
            if not path.is_file():
                raise FileNotFoundError(f"{path}: the pack has no {name}")
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        self.unet, self.decoder = session("unet.onnx"), session("vae_decoder.onnx")
        self._check(pack_dir, tolerance)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        return self.model.tokenize(prompts).cpu()

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(ids.to(self.model.device)).float().cpu()

    def eps(self, z: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        out = self.unet.run(None, {"sample": z.float().numpy(), "timestep": t.long().numpy(),
                                   "encoder_hidden_states": states.float().numpy()})[0]
        return torch.from_numpy(out)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        latent = (z.float() / self.latent_scale).numpy()
        return torch.from_numpy(self.decoder.run(None, {"latent_sample": latent})[0])

    @torch.no_grad()
    def _check(self, pack_dir: Path, tolerance: float) -> None:
        gen = torch.Generator().manual_seed(0)
        z = torch.randn((2, self.cfg.latent_channels, 16, 16), generator=gen)
        t = torch.tensor([999, 250])
        states = self.encode_text(self.tokenize(["a red circle", ""]))
        dev = self.model.device
        ref = self.model.eps(z.to(dev), t.to(dev), states.to(dev)).cpu()
        ref_img = self.model.decode(z.to(dev)).cpu()
        for what, a, b in (("unet", self.eps(z, t, states), ref),
                           ("vae_decoder", self.decode(z), ref_img)):
            diff = float((a - b).abs().max())
            if diff > tolerance:
                raise ValueError(f"{pack_dir}: {what}.onnx differs from the checkpoint by {diff:.2e} "
                                 f"(> {tolerance}); is the pack this checkpoint's export?")


def default_settings(steps: tuple[int, ...] = (10, 20)) -> list[Setting]:
    """Plain DDIM; the paper rule at the published few-step DDIM setting (w = 80, c = 300), a
    narrower window, and the whole interval between grid points with a low cutoff; the
    data-variance variant at the last two."""
    out = []
    for n in steps:
        out.append(Setting(n))
        for window, cutoff in ((20, 300), (80, 300), (1000, 100)):
            out.append(Setting(n, "paper", window, cutoff))
        for window, cutoff in ((80, 300), (1000, 100)):
            out.append(Setting(n, "data-variance", window, cutoff))
    return out


def _paired_bootstrap(fa: np.ndarray, fb: np.ndarray, ref: np.ndarray, reps: int,
                      seed: int) -> float:
    """Standard error of FD(a) − FD(b) when a and b come from the same noise (same indices)."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(reps):
        ix = rng.integers(0, len(fa), len(fa))
        diffs.append(features.frechet_from_features(fa[ix], ref)
                     - features.frechet_from_features(fb[ix], ref))
    return float(np.std(diffs, ddof=1))


def measure(model, prompts: list[str], device: str | torch.device = "cpu",
            settings: list[Setting] | None = None, guidance: float = 5.0, seed: int = 0,
            batch: int = 128, bootstrap: int = 100, feature_net=None, on_row=None,
            log=print) -> dict:
    """The Time-Shift table: one row per setting, all from the same noise and prompts.

    Each row: FD to rendered scenes of the same prompts (one scene per sample), alignment (mean
    detector score), and, against plain DDIM at the same step count, ΔFD and Δalignment with
    paired standard errors; plus how often and how far τ moved. `on_row(table)` sees the table
    so far after each row (to save partial results of a long run).
    """
    model = model.to(device).eval()
    settings = settings or default_settings()
    n = len(prompts)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, model.cfg.latent_channels, 16, 16), generator=gen, dtype=torch.float64)
    rng = np.random.default_rng(seed + 1)
    reference = np.stack([world.render_scene(rng, p) for p in prompts])
    net = feature_net or features.load_classifier(log=log)
    ref_feats = features.features(reference, net)
    floor_imgs = np.stack([world.render_scene(rng, p) for p in prompts])
    floor = features.frechet_from_features(features.features(floor_imgs, net), ref_feats)
    table = {"format": FORMAT, "samples_per_row": n, "guidance": guidance, "seed": seed,
             "fd_reference": "rendered scenes of the same prompts, one per sample",
             "fd_floor": floor}
    rows, baseline = [], {}
    for s in settings:
        started = time.time()
        images, stats = generate(model, prompts, noise, s, guidance, batch)
        feats = features.features(images, net)
        scores = detector.score(images, prompts)
        row = {"label": s.label, "steps": s.steps, "variant": s.variant, "window": s.window,
               "cutoff": s.cutoff, "fd": features.frechet_from_features(feats, ref_feats),
               "alignment": float(scores.mean()), **stats}
        if s.variant == "off":
            baseline[s.steps] = (feats, scores, row["fd"], row["alignment"])
        elif s.steps in baseline:
            b_feats, b_scores, b_fd, b_align = baseline[s.steps]
            row["delta_fd"] = row["fd"] - b_fd
            row["delta_fd_se"] = _paired_bootstrap(feats, b_feats, ref_feats, bootstrap, seed)
            d = scores - b_scores
            row["delta_alignment"] = row["alignment"] - b_align
            row["delta_alignment_se"] = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
        row["seconds"] = round(time.time() - started, 1)
        log(f"timeshift: {s.label:42s} FD {row['fd']:8.3f}  align {row['alignment']:.3f}  "
            f"shifted {row['shifted_fraction']:.2f} (mean {row['mean_shift']:+.1f})  {row['seconds']} s")
        rows.append(row)
        if on_row:
            on_row(dict(table, rows=list(rows), partial=True))
    return dict(table, rows=rows, recommendation=recommend(dict(table, rows=rows)))


def recommend(table: dict, pack_steps: int | None = None) -> dict:
    """The pack default the numbers support: the Time-Shift setting with the lowest FD at the
    largest measured step count, only if it beats plain DDIM by more than two paired standard
    errors in FD without losing more than two in alignment; otherwise Time-Shift stays off."""
    rows = table["rows"]
    steps = pack_steps or max(r["steps"] for r in rows)
    candidates = [r for r in rows if r["steps"] == steps and "delta_fd" in r
                  and r["delta_fd"] < -2 * r["delta_fd_se"]
                  and r["delta_alignment"] > -2 * r["delta_alignment_se"]]
    if not candidates:
        return {"timeShift": None, "steps": steps,
                "why": f"no Time-Shift setting beat plain DDIM at {steps} steps by more than two "
                       "paired standard errors in FD without losing alignment"}
    best = min(candidates, key=lambda r: r["fd"])
    return {"timeShift": {"window": best["window"], "cutoff": best["cutoff"],
                          "variant": best["variant"]},
            "steps": steps,
            "why": f"{best['label']}: FD {best['delta_fd']:+.3f} ± {best['delta_fd_se']:.3f}, "
                   f"alignment {best['delta_alignment']:+.3f} ± {best['delta_alignment_se']:.3f} "
                   "against plain DDIM"}


def eval_prompts(n: int, seed: int = 0) -> list[str]:
    """`n` seen-split prompts (three in four with two objects), the card's usual mix."""
    rng = np.random.default_rng(seed)
    return [world.random_prompt(rng, "train", 0.75) for _ in range(n)]


def write_table(table: dict, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(table, indent=1) + "\n")
    tmp.replace(out)
    return out


def run(model_path: str | Path = BASE_CHECKPOINT, out: str | Path = TIMESHIFT_TABLE,
        device: str = "cpu", smoke: bool = False, samples: int = 384, guidance: float = 5.0,
        steps: tuple[int, ...] = (10, 20), pack: str | Path | None = None, seed: int = 0,
        log=print) -> dict:
    """Measure the checkpoint at `model_path` and write the table to `out` (what the card reads),
    rewriting it after every row. `pack`: run UNet and decoder from that exported pack with
    onnxruntime (CPU). `smoke`: 8 samples, 4-step grids, three rows; only checks the stage runs."""
    from common.device import select_device

    from .model import load_model

    dev = select_device(device)
    model = load_model(model_path, dev)
    if pack is not None:
        model = OnnxNetworks(model, pack)
    net = features.load_classifier(smoke=smoke, log=log)
    info = {"model": str(model_path), "pack": str(pack) if pack else None, "smoke": smoke,
            "device": str(dev) if pack is None else "cpu (onnxruntime)"}

    def save(table: dict) -> None:
        write_table(dict(table, **info), out)

    if smoke:
        settings = [Setting(4), Setting(4, "paper", 1000, 100), Setting(4, "data-variance", 1000, 100)]
        table = measure(model, eval_prompts(8), dev, settings, guidance, bootstrap=5,
                        feature_net=net, on_row=save, log=log)
    else:
        table = measure(model, eval_prompts(samples, seed), dev, default_settings(steps), guidance,
                        seed, feature_net=net, on_row=save, log=log)
    table = dict(table, **info)
    write_table(table, out)
    log(f"timeshift: wrote {out}; recommendation: {table['recommendation']['timeShift']}")
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shapes.timeshift", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(BASE_CHECKPOINT), help="ShapesModel checkpoint")
    p.add_argument("--out", default=str(TIMESHIFT_TABLE), help="where to write the JSON table")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--samples", type=int, default=384, help="samples per row")
    p.add_argument("--guidance", type=float, default=5.0, help="the pack's default guidance")
    p.add_argument("--steps", default="10,20", help="DDIM step counts, comma-separated")
    p.add_argument("--pack", default=None,
                   help="the checkpoint's exported pack: run UNet and decoder with onnxruntime")
    p.add_argument("--seed", type=int, default=0, help="seed of the prompts and the noise")
    p.add_argument("--smoke", action="store_true", help="a few samples, to check the stage runs")
    args = p.parse_args(argv)
    steps = tuple(int(v) for v in args.steps.split(","))
    run(args.model, args.out, args.device, args.smoke, args.samples, args.guidance, steps,
        args.pack, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
