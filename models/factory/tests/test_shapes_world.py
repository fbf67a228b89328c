"""The Shapes world, its held-out split, the detector (the RL reward) and the score CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from shapes import detector, score, world


def test_parse_prompt_reads_one_and_two_objects_and_rejects_the_rest():
    assert world.parse_prompt("a red circle") == world.Scene((("red", "circle"),))
    two = world.parse_prompt("  A blue square  left of a yellow triangle")
    assert two.objects == (("blue", "square"), ("yellow", "triangle"))
    assert two.relation == "left of"
    assert two.prompt == "a blue square left of a yellow triangle"
    for bad in ("a purple circle", "a red hexagon", "a red circle near a blue square", ""):
        with pytest.raises(ValueError, match="prompt"):
            world.parse_prompt(bad)


def test_heldout_combos_are_a_fixed_fifth_closed_under_swap_and_never_in_training():
    assert len(world.HELDOUT_COMBOS) == round(0.2 * 144)
    assert world.HELDOUT_COMBOS == world._heldout_combos()
    for c in world.HELDOUT_COMBOS:
        assert c[2:] + c[:2] in world.HELDOUT_COMBOS
    train, held = world.all_prompts("train"), world.all_prompts("heldout")
    assert len(held) == 4 * len(world.HELDOUT_COMBOS)
    assert len(train) == 12 + 4 * (144 - len(world.HELDOUT_COMBOS))
    assert not set(train) & set(held)
    assert all(world.is_heldout(p) for p in held)
    assert not any(world.is_heldout(p) for p in train)
    rng = np.random.default_rng(0)
    assert not any(world.is_heldout(world.random_prompt(rng, "train", 0.9)) for _ in range(500))
    assert all(world.is_heldout(world.random_prompt(rng, "heldout")) for _ in range(100))
    with pytest.raises(ValueError, match="split"):
        world.all_prompts("test")


def test_rendered_scenes_follow_the_world_rules():
    rng = np.random.default_rng(1)
    for prompt in ["a red circle above a green triangle", "a yellow square"] * 20:
        img = world.render_scene(rng, prompt)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        found = detector.detect(img)
        scene = world.parse_prompt(prompt)
        assert len(found) == len(scene.objects)
        for f in found:
            assert world.MIN_BOX <= max(f.width, f.height) <= world.MAX_BOX
        # Background pixels are light and low in saturation.
        bg = img[detector.colour_labels(img) < 0].astype(int)
        assert 130 < bg.mean(1).min() and bg.mean(1).max() < 245
        assert (bg.max(1) - bg.min(1)).max() < detector.MIN_CHROMA


def test_make_dataset_is_reproducible_from_its_seed():
    a, pa = world.make_dataset(16, seed=3)
    b, pb = world.make_dataset(16, seed=3)
    c, _ = world.make_dataset(16, seed=4)
    assert pa == pb and np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.fixture(scope="module")
def scenes():
    return world.make_dataset(600, seed=11)


def test_detector_accepts_rendered_scenes_of_their_own_prompts(scenes):
    images, prompts = scenes
    assert detector.score(images, prompts).mean() >= 0.98
    held, held_prompts = world.make_dataset(200, seed=12, split="heldout")
    assert detector.score(held, held_prompts).mean() >= 0.98


def test_detector_rejects_mismatched_prompts(scenes):
    images, prompts = scenes
    rng = np.random.default_rng(13)
    others = []
    for p in prompts:
        while True:
            q = world.random_prompt(rng, "train", 0.75)
            if world.parse_prompt(q) != world.parse_prompt(p):
                break
        others.append(q)
    assert detector.score(images, others).mean() <= 0.05


def test_detector_checks_the_relation_and_extra_objects():
    rng = np.random.default_rng(5)
    img = world.render_scene(rng, "a red circle left of a blue square")
    assert detector.score(img, ["a red circle left of a blue square"])[0] == 1
    assert detector.score(img, ["a blue square right of a red circle"])[0] == 1
    assert detector.score(img, ["a red circle right of a blue square"])[0] == 0
    assert detector.score(img, ["a red circle"])[0] == 0  # an extra object
    blank = world.render_scene(rng, "a green square")
    blank[:] = 200
    assert detector.score(blank, ["a green square"])[0] == 0


def test_detector_survives_mild_blur(scenes):
    images, prompts = scenes
    blurred = np.stack([np.clip(ndimage.gaussian_filter(i.astype(float), (0.6, 0.6, 0)), 0, 255)
                        .astype(np.uint8) for i in images[:200]])
    assert detector.score(blurred, prompts[:200]).mean() >= 0.95


def test_score_rejects_bad_batches():
    with pytest.raises(ValueError, match="uint8"):
        detector.score(np.zeros((2, 32, 32, 3), np.uint8), ["a red circle"] * 2)
    with pytest.raises(ValueError, match="prompts"):
        detector.score(np.zeros((2, 64, 64, 3), np.uint8), ["a red circle"])


def test_score_cli_prints_one_json_line(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(8)
    prompt = "a yellow triangle below a green circle"
    files = []
    for i, p in enumerate([prompt, "a red square"]):
        f = tmp_path / f"{i}.png"
        Image.fromarray(world.render_scene(rng, p)).save(f)
        files.append(str(f))
    assert score.main(["--prompt", prompt, *files]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    result = json.loads(out[0])
    assert result["prompt"] == prompt
    assert [r["score"] for r in result["scores"]] == [1, 0]
    assert result["alignment"] == 0.5
    assert {o["colour"] for o in result["scores"][0]["objects"]} == {"yellow", "green"}

    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(big)
    assert score.main(["--prompt", prompt, str(big)]) == 2
    assert "big.png" in capsys.readouterr().err
