"""Real photographs from Debian wallpaper packages, fetched into the ignored cache.

`apt-get download` + `dpkg -x` bring each package into .cache/restore/; a fixed, hand-checked
list below keeps the photographs (drawings, renders and abstract art are left out). Each photo's
copyright and licence are read from its package's Debian copyright file (and, for Plasma, the
wallpaper's metadata.json), so the model card lists what the packages themselves say.

The split is per file and deterministic: a photo is held out for validation when the first byte of
sha256("retrace-restore-split/" + id) is below 52 (about one in five), whatever else is fetched.
Photos are stored at a working size (long side WORKING_LONG_SIDE, Lanczos): downscaling real
wallpapers by 2-6x removes their JPEG blocking and sensor grain, so the "clean" side is clean.
"""
from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from common.files import write_atomic, write_text_atomic

WORKING_LONG_SIDE = 1024
SMOKE_LONG_SIDE = 384
SPLIT_SALT = "retrace-restore-split/"
VAL_BELOW = 52  # of 256: about 20 % of the files are held out
DATA_VERSION = 1  # bump when the selection or the preprocessing changes

# package -> list of (id, path inside the package). Checked by eye: photographs only.
PHOTOS: dict[str, list[tuple[str, str]]] = {
    "mate-backgrounds": [
        (f"mate-{n.lower()}", f"usr/share/backgrounds/mate/nature/{n}.jpg")
        for n in ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird",
                  "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower")
    ],
    # Plasma wallpapers ship one folder per wallpaper with several sizes; the largest is used.
    "plasma-workspace-wallpapers": [
        (f"plasma-{n.lower()}", f"usr/share/wallpapers/{n}/contents/images/*")
        for n in ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
                  "FallenLeaf", "Grey", "Kite", "OneStandsOut", "Path", "summer_1am")
    ],
    "lomiri-wallpapers-16.04": [
        (f"lomiri-{n.split('_by_')[0].lower()}", f"usr/share/backgrounds/{n}.jpg")
        for n in ("Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
                  "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede",
                  "aitzgorri_by_Aitzol_Berasategi", "free_by_Peter_Nerlich",
                  "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
                  "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
                  "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi")
    ],
    "lomiri-wallpapers-20.04": [
        ("lomiri-kleiber", "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"),
    ],
}
SMOKE_PACKAGES = ("lomiri-wallpapers-16.04",)


@dataclass
class Photo:
    id: str
    package: str
    version: str
    path: str
    sha256: str
    copyright: str
    licence: str
    split: str
    original_size: tuple[int, int]
    working_size: tuple[int, int]
    file: str  # the working-size PNG, relative to the photos folder


def split_of(photo_id: str) -> str:
    first = hashlib.sha256((SPLIT_SALT + photo_id).encode()).digest()[0]
    return "val" if first < VAL_BELOW else "train"


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}\n"
                           "The data stage needs Debian's package lists: run `apt-get update` once.")
    return proc.stdout


def fetch_package(package: str, cache: Path) -> tuple[Path, str]:
    """Download (once) and unpack (once) a Debian package; return (root, version)."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        _run(["apt-get", "download", package], cwd=debs)
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            raise RuntimeError(f"apt-get download {package} left no .deb in {debs}")
    deb = found[-1]
    version = _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
    root = cache / "extract" / package
    stamp = root / ".unpacked"
    if stamp.is_file() and stamp.read_text() == deb.name:
        return root, version
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    _run(["dpkg", "-x", str(deb), str(root)])
    stamp.write_text(deb.name)
    return root, version


def _copyright_paragraphs(root: Path, package: str) -> list[dict[str, str]]:
    text = (root / "usr/share/doc" / package / "copyright").read_text(errors="replace")
    paragraphs = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Files" in fields:
            paragraphs.append(fields)
    return paragraphs


def licence_of(root: Path, package: str, path: str) -> tuple[str, str]:
    """(copyright, licence) for an installed file, from the package's DEP-5 copyright file.

    DEP-5 patterns are relative to the upstream tree, which differs from the installed path, so a
    pattern matches when it matches a trailing part of the installed path, or when it names the
    file itself (no wildcard) in another upstream folder; the last match wins.
    """
    parts = path.split("/")
    tails = ["/".join(parts[i:]) for i in range(len(parts))]

    def matches(pattern: str) -> bool:
        name = pattern.rsplit("/", 1)[-1]
        by_name = not any(c in name for c in "*?[") and name == parts[-1]
        return by_name or any(fnmatch.fnmatch(tail, pattern) for tail in tails)

    found = ("", "")
    for para in _copyright_paragraphs(root, package):
        if any(matches(pattern) for pattern in para["Files"].split()):
            found = (" ".join(para.get("Copyright", "").split()),
                     para.get("License", "").splitlines()[0].strip())
    if package == "plasma-workspace-wallpapers":
        meta = json.loads((root / Path(path).parents[2] / "metadata.json").read_text())["KPlugin"]
        author = meta["Authors"][0]["Name"]
        found = (f"{author} (KDE); package: {found[0]}",
                 f"{meta.get('License', '?')} (metadata.json); {found[1]} (Debian copyright)")
    if not found[1]:
        raise RuntimeError(f"no licence found for {package}:{path}")
    return found


def _pick_file(root: Path, pattern: str) -> str:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    matches = sorted(glob.glob(str(root / pattern)))
    if not matches:
        raise FileNotFoundError(f"{pattern} is not in {root}")
    best = max(matches, key=lambda f: (np.prod(Image.open(f).size), f))
    return str(Path(best).relative_to(root))


def _load_working(src: Path, long_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = None
    with Image.open(src) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        size = im.size
        scale = long_side / max(size)
        if scale < 1:
            target = (max(8, round(size[0] * scale)), max(8, round(size[1] * scale)))
            # a box pre-reduction then Lanczos: alias-free and much faster on 5-6k photos
            factor = max(1, int(1 / scale) // 2)
            if factor > 1:
                im = im.reduce(factor)
            im = im.resize(target, Image.LANCZOS)
        return np.asarray(im, dtype=np.uint8), size


def photos_dir(cache: Path, smoke: bool) -> Path:
    return cache / ("photos-smoke" if smoke else "photos")


def prepare(cache: Path, smoke: bool = False, log=print) -> dict:
    """Fetch, select, split and downscale the photos; return the manifest (cached on disk)."""
    from PIL import Image

    out = photos_dir(cache, smoke)
    packages = SMOKE_PACKAGES if smoke else tuple(PHOTOS)
    long_side = SMOKE_LONG_SIDE if smoke else WORKING_LONG_SIDE
    manifest_path = out / "manifest.json"
    key = {"version": DATA_VERSION, "packages": list(packages), "long_side": long_side}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") == key and all((out / p["file"]).is_file() for p in manifest["photos"]):
            return manifest
    shutil.rmtree(out, ignore_errors=True)
    photos: list[Photo] = []
    for package in packages:
        root, version = fetch_package(package, cache)
        log(f"data: {package} {version}")
        for photo_id, pattern in PHOTOS[package]:
            path = _pick_file(root, pattern) if "*" in pattern else pattern
            src = root / path
            pixels, original = _load_working(src, long_side)
            split = split_of(photo_id)
            rel = f"{split}/{photo_id}.png"
            (out / split).mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(pixels)
            write_atomic(out / rel, lambda tmp: image.save(tmp, format="PNG", compress_level=6))
            copyright_, licence = licence_of(root, package, path)
            photos.append(Photo(photo_id, package, version, path, _sha256(src), copyright_, licence,
                                split, original, (pixels.shape[1], pixels.shape[0]), rel))
    manifest = {"key": key, "photos": [asdict(p) for p in photos]}
    n_val = sum(p.split == "val" for p in photos)
    if n_val == 0 or n_val == len(photos):
        raise RuntimeError("the split left no training or no validation photo")
    write_text_atomic(manifest_path, json.dumps(manifest, indent=1) + "\n")
    log(f"data: {len(photos) - n_val} train / {n_val} val photos in {out}")
    return manifest


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_split(cache: Path, manifest: dict, split: str, smoke: bool = False) -> list[tuple[str, np.ndarray]]:
    """(id, uint8 HxWx3) for every photo of a split, in manifest order."""
    from PIL import Image

    base = photos_dir(cache, smoke)
    return [(p["id"], np.asarray(Image.open(base / p["file"]).convert("RGB"), dtype=np.uint8))
            for p in manifest["photos"] if p["split"] == split]
