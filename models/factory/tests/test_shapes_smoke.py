"""The whole Shapes recipe on a tiny budget: `python -m shapes --smoke` (issue 4, acceptance 1).

Runs every stage (base, rl, export, timeshift, card) on the CPU into a temporary cache and checks
what each stage leaves behind; the committed packs are never touched.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

FACTORY = Path(__file__).resolve().parent.parent
REPO = FACTORY.parent.parent


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    cache = tmp_path_factory.mktemp("shapes-cache")
    committed = REPO / "models" / "packs" / "shapes-base"
    before = _digest(committed) if committed.is_dir() else None
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "shapes", "--smoke", "--device", "cpu", "--cache", str(cache)],
                          cwd=FACTORY, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    seconds = time.time() - started
    print(f"python -m shapes --smoke took {seconds:.0f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return cache / "smoke", proc.stdout, before, committed


def test_every_stage_ran(smoke):
    _, out, _, _ = smoke
    assert "shapes: stages base,rl,export,timeshift,card" in out and "shapes: done" in out


def test_base_checkpoint_and_record(smoke):
    root = smoke[0]
    from shapes.model import load_model

    model = load_model(root / "base" / "model.pt")
    assert model.latent_scale > 0
    record = json.loads((root / "base" / "train.json").read_text())
    assert record["vae_iters"] >= 1 and record["unet_iters"] >= 1
    assert {"one_object", "seen_two", "heldout_two"} <= set(record["eval"])


def test_packs_exported_with_card_and_eval(smoke):
    root = smoke[0]
    packs = sorted(p.name for p in (root / "packs").iterdir() if (p / "pack.json").is_file())
    assert "shapes-base" in packs
    for pack in packs:
        folder = root / "packs" / pack
        manifest = json.loads((folder / "pack.json").read_text())
        assert manifest["modelCard"] == "MODEL_CARD.md"
        assert (folder / "MODEL_CARD.md").read_text().startswith("# Shapes")
        assert json.loads((folder / "eval.json").read_text())["pack"] == pack
        assert (root / "parity" / f"{pack}.safetensors").is_file()
        if pack != "shapes-base":
            assert manifest["tuning"]["base"] == "shapes-base"


def test_committed_packs_untouched(smoke):
    _, _, before, committed = smoke
    if before is None:
        pytest.skip("no committed shapes-base pack to compare against")
    assert _digest(committed) == before
