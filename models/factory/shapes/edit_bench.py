"""The Shapes edit benchmark (issue 10): does an edit change what was asked, and only that?

`prepare` renders two-object scenes of the Shapes world (seeded), upscales them to 512 × 512 as
"photos" (Lanczos), and picks for each an edit that recolours the first object; it records each
object's mask. The engine then edits every photo three ways (bench/shapes-edit.mjs): BDIA with
the automatic mask, BDIA without a mask, naive DDIM inversion with the automatic mask. `score`
reads the results back and measures, per method:

  (a) the edit prompt holds: the factory's detector on the result downscaled to 64 × 64;
  (b) the other object is unchanged: share of its pixels (at 512) with every sample identical;
  (c) outside the mask nothing changed: share of pixels outside the automatic mask (the one the
      masked rows used, dilated by its feather) with every sample identical.

Run: python -m shapes.edit_bench prepare --out DIR [--n 100] [--seed S]
     python -m shapes.edit_bench score --dir DIR --out RESULT.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from . import world
from .detector import detect, prompt_holds

PHOTO = 512
METHODS = ("bdia-auto-mask", "bdia-no-mask", "ddim-inversion-auto-mask")


def render_with_masks(rng: np.random.Generator, prompt: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """As world.render_scene, also returning each object's boolean [64, 64] mask."""
    scene = world.parse_prompt(prompt)
    img = world._background(rng)
    masks = []
    for (colour, _), (top, left, size, mask) in zip(scene.objects, world._place(rng, scene)):
        rgb = np.array(world.COLOURS[colour], dtype=float)
        rgb = rgb + rng.integers(-world.COLOUR_JITTER, world.COLOUR_JITTER + 1, 3)
        img[top:top + size, left:left + size][mask] = rgb
        full = np.zeros((world.SIZE, world.SIZE), dtype=bool)
        full[top:top + size, left:left + size] = mask
        masks.append(full)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), masks


def recoloured(prompt: str, rng: np.random.Generator) -> str:
    """The prompt with its first object in another palette colour."""
    scene = world.parse_prompt(prompt)
    (colour, shape), rest = scene.objects[0], scene.objects[1:]
    others = [c for c in world.COLOURS if c != colour]
    new = others[int(rng.integers(len(others)))]
    return world.Scene(((new, shape), *rest), scene.relation).prompt


def prepare(out: Path, n: int, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    two = [p for p in world.all_prompts("train") if world.parse_prompt(p).relation]
    scenes = []
    for i in range(n):
        prompt = two[int(rng.integers(len(two)))]
        image, masks = render_with_masks(rng, prompt)
        name = f"scene-{i:03d}"
        Image.fromarray(image).resize((PHOTO, PHOTO), Image.LANCZOS).save(out / f"{name}.png")
        for k, m in enumerate(masks):
            Image.fromarray(m.astype(np.uint8) * 255).resize((PHOTO, PHOTO), Image.NEAREST).save(
                out / f"{name}-object{k}.png")
        scenes.append({"name": name, "source": prompt, "edit": recoloured(prompt, rng),
                       "changed": 0, "kept": 1})
    (out / "scenes.json").write_text(json.dumps({"seed": seed, "photo": PHOTO, "scenes": scenes},
                                                indent=1))
    print(f"{n} scenes in {out}")


def _load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def score(folder: Path, out: Path) -> dict:
    spec = json.loads((folder / "scenes.json").read_text())
    rows = {}
    for method in METHODS:
        holds, kept, outside, missing = [], [], [], 0
        for s in spec["scenes"]:
            result = folder / method / f"{s['name']}.png"
            mask_file = folder / "bdia-auto-mask" / f"{s['name']}-mask.png"
            if not result.exists() or not mask_file.exists():
                missing += 1
                continue
            src = _load(folder / f"{s['name']}.png")
            img = _load(result)
            small = np.asarray(Image.fromarray(img).resize((world.SIZE, world.SIZE), Image.BOX))
            holds.append(float(prompt_holds(s["edit"], detect(small))))
            same = (img == src).all(-1)
            other = np.asarray(Image.open(folder / f"{s['name']}-object{s['kept']}.png")) > 0
            kept.append(float(same[other].mean()))
            mask = np.asarray(Image.open(mask_file).convert("L")) > 0
            outside.append(float(same[~mask].mean()) if (~mask).any() else 1.0)
        rows[method] = {
            "scenes": len(holds),
            "missing": missing,
            "editPromptHolds": round(float(np.mean(holds)), 3) if holds else None,
            "otherObjectUnchanged": round(float(np.mean(kept)), 4) if kept else None,
            "outsideMaskIdentical": round(float(np.mean(outside)), 4) if outside else None,
        }
    result = {"seed": spec["seed"], "photo": spec["photo"], "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'method':28} {'(a) prompt holds':>17} {'(b) other object':>17} {'(c) outside mask':>17}")
    for m, r in rows.items():
        print(f"{m:28} {r['editPromptHolds']!s:>17} {r['otherObjectUnchanged']!s:>17} "
              f"{r['outsideMaskIdentical']!s:>17}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shapes.edit_bench")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--seed", type=int, default=20261205)
    s = sub.add_parser("score")
    s.add_argument("--dir", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.out, args.n, args.seed)
    else:
        score(args.dir, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
