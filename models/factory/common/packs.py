"""Writing `retrace-pack/1` manifests (pack.json).

The engine validates pack.json with the zod schema in electron/engine/packs/schema.ts. This module
fills in the sha256 of every component file and checks the few rules a recipe most easily gets
wrong (id, required fields, files present), so a broken pack fails here, at build time.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from .files import write_text_atomic

PACK_FORMAT = "retrace-pack/1"
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_REQUIRED = ("id", "name", "task", "space", "resolution", "schedule", "prediction",
             "timestepInput", "components", "licence")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_pack_json(folder: str | Path, manifest: dict) -> Path:
    """Write folder/pack.json from `manifest`, adding `format` and each component's sha256."""
    folder = Path(folder)
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise ValueError(f"pack.json is missing {', '.join(missing)}")
    if not _ID.match(manifest["id"]):
        raise ValueError(f"pack id {manifest['id']!r} is not folder-safe (a-z 0-9 . _ -)")
    out = {"format": PACK_FORMAT, **manifest}
    components = {}
    for name, comp in manifest["components"].items():
        file = folder / comp["file"]
        if not file.is_file():
            raise FileNotFoundError(f"component {name}: {file} does not exist")
        components[name] = {**comp, "sha256": sha256_file(file)}
    out["components"] = components
    path = folder / "pack.json"
    return write_text_atomic(path, json.dumps(out, indent=2, ensure_ascii=False) + "\n")


def folder_bytes(folder: str | Path) -> int:
    """Total size of the files in a pack folder (the bundled-size budget counts this)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
