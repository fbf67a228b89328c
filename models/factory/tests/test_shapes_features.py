"""The feature space of Shapes images: Fréchet distance and diversity measures."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from shapes import features, world


@pytest.fixture(scope="module")
def small_net():
    # A briefly trained net: enough structure for these checks, seconds on the CPU.
    net, meta = features.train_classifier(n_images=256, epochs=2, log=lambda *_: None)
    assert meta["steps"] == 2 * (256 // 64)
    return net


@pytest.fixture(scope="module")
def sets():
    a, pa = world.make_dataset(240, seed=101)
    b, pb = world.make_dataset(240, seed=102)
    return a, pa, b, pb


def test_frechet_of_known_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40_000, 4))
    b = rng.normal(size=(40_000, 4)) * 2 + np.array([1.0, 0, 0, 0])
    # ‖μ‖² + tr(I + 4I − 2·2I) = 1 + 4.
    assert features.frechet_from_features(a, b) == pytest.approx(5.0, abs=0.15)
    assert features.frechet_from_features(a, a) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="two images"):
        features.frechet_from_features(a[:1], b)


def test_frechet_distance_is_zero_on_the_same_set_and_positive_across_sets(small_net, sets):
    a, _, b, _ = sets
    assert features.frechet_distance(a, a, small_net) == pytest.approx(0.0, abs=1e-6)
    assert features.frechet_distance(a, b, small_net) > 0


def test_trained_features_separate_degraded_images_from_rendered_ones(sets):
    if not features.FEATURES_PATH.is_file():
        pytest.skip(f"{features.FEATURES_PATH} not trained yet (python -m shapes.features); "
                    "a briefly trained net does not react to blur reliably")
    net = features.load_classifier(train_if_missing=False)
    a, _, b, _ = sets
    same = features.frechet_distance(a, b, net)
    blurred = np.stack([np.clip(ndimage.gaussian_filter(i.astype(float), (1.5, 1.5, 0)), 0, 255)
                        .astype(np.uint8) for i in b])
    swapped = np.ascontiguousarray(b[..., ::-1])
    assert features.frechet_distance(a, blurred, net) > 2 * same
    assert features.frechet_distance(a, swapped, net) > 2 * same


def test_diversity_is_zero_for_copies_and_positive_for_fresh_scenes(small_net):
    rng = np.random.default_rng(7)
    distinct = rng.choice(world.all_prompts("train"), 30, replace=False)
    prompts = [str(p) for p in distinct for _ in range(4)]
    fresh = np.stack([world.render_scene(rng, p) for p in prompts])
    copies = np.repeat(fresh[::4], 4, axis=0)
    d_fresh = features.diversity(fresh, prompts, small_net)
    d_copies = features.diversity(copies, prompts, small_net)
    assert d_fresh["groups"] == 30 and d_fresh["images"] == 120
    assert d_fresh["pairwise"] > 0 and d_copies["pairwise"] == pytest.approx(0, abs=1e-9)
    # Positions are uniform over the free room (std ~10 px), sizes over 14–24 px (std ~3 px).
    assert d_fresh["position_std"] > 5 and d_fresh["size_std"] > 1.5
    assert d_fresh["background_luminance_std"] > 3
    for key in ("position_std", "size_std", "background_luminance_std", "background_tint_std"):
        assert d_copies[key] == 0
    assert d_copies["pairwise_all"] > 0  # different prompts still differ


def test_classifier_round_trip_and_bad_files(small_net, tmp_path):
    path = features.save_classifier(small_net, {"note": "test"}, tmp_path / "f.pt")
    loaded = features.load_classifier(path, train_if_missing=False)
    x = world.make_dataset(4, seed=3)[0]
    assert np.array_equal(features.features(x, loaded), features.features(x, small_net))
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something-else"}, bad)
    with pytest.raises(ValueError, match="bad.pt"):
        features.load_classifier(bad, train_if_missing=False)
    with pytest.raises(FileNotFoundError):
        features.load_classifier(tmp_path / "missing.pt", train_if_missing=False)
    with pytest.raises(ValueError, match="uint8"):
        features.features(np.zeros((2, 32, 32, 3), np.uint8), small_net)


def test_cached_classifier_recognises_scenes():
    if not features.FEATURES_PATH.is_file():
        pytest.skip(f"{features.FEATURES_PATH} not trained yet (python -m shapes.features)")
    net = features.load_classifier(train_if_missing=False)
    images, _ = world.make_dataset(300, seed=55)
    assert features._presence_accuracy(net, images) >= 0.9
