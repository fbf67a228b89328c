"""The feature space of Shapes images: Fréchet distance and diversity measures."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from shapes import features, world


@pytest.fixture(scope="module")
def sets():
    a, pa = world.make_dataset(240, seed=101)
    b, pb = world.make_dataset(240, seed=102)
    return a, pa, b, pb


def test_frechet_of_known_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40_000, 4))
    b = rng.normal(size=(40_000, 4)) * 2 + np.array([1.0, 0, 0, 0])
    # ‖μ‖² + tr(I + 4I − 2·2I) = 1 + 4. Sampling error of the estimate from 40 000 rows: the mean
    # term 2·|Δμ|·sqrt(5/n) = 0.022, the trace term per dimension sqrt(10/n) (4 of them) = 0.032,
    # so 0.15 is ~4 standard errors; the draws are seeded (numpy's generator is the same on every
    # machine), so only float64 rounding (~1e-13) varies (estimate: 5.055).
    assert features.frechet_from_features(a, b) == pytest.approx(5.0, abs=0.15)
    # A set against itself: the means cancel exactly and the traces to ~d * 2^-52 * ‖Σ‖ = 1e-15.
    assert features.frechet_from_features(a, a) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="two images"):
        features.frechet_from_features(a[:1], b)


def test_frechet_distance_is_zero_on_the_same_set_and_positive_across_sets(feature_net, sets):
    a, _, b, _ = sets
    # Same features twice (same batches), so the means cancel exactly; the trace terms are sums of
    # eigenvalues of Σ that agree to ~64 * 2^-52 * λmax(Σ) (λmax ~200) = 3e-12: 1e-6 is slack
    # that no rounding reaches (sqrtm of ΣΣ gave −7e-10 here, its error growing with cond(Σ)²).
    assert features.frechet_distance(a, a, feature_net) == pytest.approx(0.0, abs=1e-6)
    assert features.frechet_distance(a, b, feature_net) > 0


def test_trained_features_separate_degraded_images_from_rendered_ones(feature_net, sets):
    net = feature_net
    a, _, b, _ = sets
    same = features.frechet_distance(a, b, net)
    blurred = np.stack([np.clip(ndimage.gaussian_filter(i.astype(float), (1.5, 1.5, 0)), 0, 255)
                        .astype(np.uint8) for i in b])
    swapped = np.ascontiguousarray(b[..., ::-1])
    # Margins of the session net (conftest.FEATURE_NET_BUDGET) over 10 seeds and 1-2 threads:
    # blur 2.35-5.71, swap 3.99-5.98 times the same-prompt-mix FD (the recipe's net: 2.9, 3.9).
    assert features.frechet_distance(a, blurred, net) > 2 * same
    assert features.frechet_distance(a, swapped, net) > 2 * same


def test_diversity_is_zero_for_copies_and_positive_for_fresh_scenes(feature_net):
    rng = np.random.default_rng(7)
    distinct = rng.choice(world.all_prompts("train"), 30, replace=False)
    prompts = [str(p) for p in distinct for _ in range(4)]
    fresh = np.stack([world.render_scene(rng, p) for p in prompts])
    copies = np.repeat(fresh[::4], 4, axis=0)
    d_fresh = features.diversity(fresh, prompts, feature_net)
    d_copies = features.diversity(copies, prompts, feature_net)
    assert d_fresh["groups"] == 30 and d_fresh["images"] == 120
    # Exact: features() runs each distinct image through the net once, so copies share one row.
    assert d_fresh["pairwise"] > 0 and d_copies["pairwise"] == 0
    # Positions are uniform over the free room (std ~10 px), sizes over 14–24 px (std ~3 px).
    assert d_fresh["position_std"] > 5 and d_fresh["size_std"] > 1.5
    assert d_fresh["background_luminance_std"] > 3
    for key in ("position_std", "size_std", "background_luminance_std", "background_tint_std"):
        assert d_copies[key] == 0
    assert d_copies["pairwise_all"] > 0  # different prompts still differ


def test_features_compute_each_distinct_image_once_and_keep_the_order(feature_net, sets):
    images = sets[0][:3]
    f = features.features(images[[0, 1, 0, 2, 1, 0]], feature_net)
    assert f.dtype == np.float64 and f.shape == (6, features.FEATURE_DIM)
    # The distinct images in order of first appearance are batched exactly as the plain three.
    assert np.array_equal(f[[0, 1, 3]], features.features(images, feature_net))
    assert np.array_equal(f[[2, 5]], f[[0, 0]]) and np.array_equal(f[4], f[1])
    assert features.features(images[:0], feature_net).shape == (0, features.FEATURE_DIM)


def test_classifier_round_trip_and_bad_files(feature_net, tmp_path):
    path = features.save_classifier(feature_net, {"note": "test"}, tmp_path / "f.pt")
    loaded = features.load_classifier(path, train_if_missing=False)
    x = world.make_dataset(4, seed=3)[0]
    assert np.array_equal(features.features(x, loaded), features.features(x, feature_net))
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something-else"}, bad)
    with pytest.raises(ValueError, match="bad.pt"):
        features.load_classifier(bad, train_if_missing=False)
    with pytest.raises(FileNotFoundError):
        features.load_classifier(tmp_path / "missing.pt", train_if_missing=False)
    with pytest.raises(ValueError, match="uint8"):
        features.features(np.zeros((2, 32, 32, 3), np.uint8), feature_net)


def test_cached_classifier_recognises_scenes(feature_net):
    # feature_net is the session's classifier, saved and loaded back as the cached one is.
    images, _ = world.make_dataset(300, seed=55)
    # 0.96-0.993 over 10 seeds and 1-2 threads at the test budget (the recipe's net: 1.0).
    assert features._presence_accuracy(feature_net, images) >= 0.9
