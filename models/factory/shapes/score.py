"""`python -m shapes.score --prompt P IMG…`: score images against a prompt with the detector.

Prints one JSON line, {"prompt", "scores": [{"file", "score", "objects"}], "alignment"}, so that
the engine's end-to-end check (and a person) can see whether `retrace generate` followed a prompt.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import detector, world


def load_image(path: str | Path) -> np.ndarray:
    """A 64×64 image file as uint8 [64,64,3] (alpha dropped); other sizes are an error."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read image ({e})") from e
    if rgb.shape != (world.SIZE, world.SIZE, 3):
        raise ValueError(f"{path}: Shapes images are {world.SIZE}×{world.SIZE}, "
                         f"got {rgb.shape[1]}×{rgb.shape[0]}")
    return rgb


def score_files(prompt: str, files: list[str]) -> dict:
    world.parse_prompt(prompt)
    rows = []
    for f in files:
        image = load_image(f)
        found = detector.detect(image)
        rows.append({"file": str(f), "score": int(detector.prompt_holds(prompt, found)),
                     "objects": detector.describe(image)})
    alignment = float(np.mean([r["score"] for r in rows])) if rows else 0.0
    return {"prompt": prompt, "scores": rows, "alignment": alignment}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shapes.score", description=__doc__)
    p.add_argument("--prompt", required=True, help='e.g. "a red circle left of a blue square"')
    p.add_argument("images", nargs="+", help="64×64 image files (PNG, ...)")
    args = p.parse_args(argv)
    try:
        result = score_files(args.prompt, args.images)
    except ValueError as e:
        print(f"shapes.score: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
