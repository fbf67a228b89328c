"""`retrace edit` on a real photograph (issue 10, acceptance 2): a Debian wallpaper (the same
package the restore factory's smoke run fetches), edited with a painted mask through the built
CLI. Every pixel far enough outside the mask (beyond three feathers) must be the photo's own; the
edit must show inside; the result has the photo's size; the same prompt gives the photo back.

Needs the built CLI (`dist/`, made by `npm install` or the vitest run before this in `npm test`)
and the photo (cached, or fetched with apt-get download like the factory's data stage).
"""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from restore import config
from restore.data import fetch_package

ROOT = config.FACTORY.parent.parent
CLI = ROOT / "bin" / "retrace.js"
PACKAGE = "lomiri-wallpapers-16.04"
PHOTO = "usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg"


def _photo() -> Path:
    debs = config.CACHE / "debs"
    if not any(debs.glob(f"{PACKAGE}_*.deb")) and shutil.which("apt-get") is None:
        pytest.skip(f"no cached {PACKAGE} and no apt-get to fetch it (Debian packages needed)")
    root, _ = fetch_package(PACKAGE, config.CACHE)
    return root / PHOTO


def _cli(*args: str) -> dict:
    if not (ROOT / "dist" / "electron" / "cli" / "main.js").is_file():
        pytest.fail("dist/ is not built: run `npm run build` (npm test builds it before this)")
    proc = subprocess.run(["node", str(CLI), "--quiet", "--provider", "cpu", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))


def test_masked_edit_of_a_real_photo_is_exact_outside_the_mask(tmp_path):
    photo = _photo()
    src = _pixels(photo)
    h, w, _ = src.shape
    # The user's mask: a rectangle over the middle third, drawn at a quarter of the photo's size.
    mask = np.zeros((h // 4, w // 4), dtype=np.uint8)
    top, bottom, left, right = h // 12, h // 4 - h // 12, w // 12, w // 4 - w // 12
    mask[top:bottom, left:right] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    feather = 8
    out = tmp_path / "edited.png"
    result = _cli("edit", str(photo), "--model", "shapes-base", "--steps", "20",
                  "--source-prompt", "a blue square", "--prompt", "a yellow circle",
                  "--mask", str(tmp_path / "mask.png"), "--feather", str(feather),
                  "--out", str(out), "--json")
    edited = _pixels(out)
    assert edited.shape == src.shape
    assert (result["width"], result["height"]) == (w, h)
    same = (edited == src).all(-1)
    # Geometry alone, apart from the engine's mask code: the rectangle at full size, grown by
    # three feathers (the Gaussian's reach) for "outside", shrunk by three for "inside".
    ys, xs = np.mgrid[0:h, 0:w]
    t, b, l, r = top * 4, bottom * 4, left * 4, right * 4
    reach = 3 * feather + 4  # + the mask's own 4× scaling step
    outside = (ys < t - reach) | (ys >= b + reach) | (xs < l - reach) | (xs >= r + reach)
    inside = (ys >= t + reach) & (ys < b - reach) & (xs >= l + reach) & (xs < r - reach)
    assert same[outside].all(), f"{int((~same[outside]).sum())} pixels changed outside the mask"
    assert (~same[inside]).mean() > 0.5, "the edit did not show inside the mask"

    back = tmp_path / "same.png"
    identity = _cli("edit", str(photo), "--model", "shapes-base", "--steps", "20",
                    "--source-prompt", "a blue square", "--prompt", "a blue square",
                    "--out", str(back), "--json")
    assert identity["unchanged"] is True
    assert (_pixels(back) == src).all()
