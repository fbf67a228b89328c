"""Degradations and the train/validation split: deterministic, in range, documented."""
import math

import torch

from restore import degrade
from restore.data import PHOTOS, split_of


def test_split_is_by_file_and_deterministic():
    ids = [pid for photos in PHOTOS.values() for pid, _ in photos]
    assert len(ids) == len(set(ids))
    first = {pid: split_of(pid) for pid in ids}
    assert first == {pid: split_of(pid) for pid in ids}
    assert {"train", "val"} == set(first.values())


def test_denoise_noise_level_stays_in_the_documented_range():
    clean = torch.full((64, 3, 32, 32), 0.5)
    noisy = degrade.noisy(clean, torch.Generator().manual_seed(0))
    std = (noisy - clean).std(dim=(1, 2, 3))
    # sigma in [5, 50]/255; shot noise adds at most a*x = 0.01*0.5 to the variance, so the std is
    # at most sqrt((50/255)^2 + 0.005) = 53.1/255. A std measured on 3072 samples is within 4
    # standard errors (4/sqrt(2*3072) = 5 %) of that: [4.75, 55.8]/255, inside the bounds.
    assert std.min() > 4 / 255 and std.max() < 56 / 255


def test_lowlight_darkens_and_quantises():
    clean = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    dark = degrade.lowlight(clean, torch.Generator().manual_seed(2))
    assert (dark.mean(dim=(1, 2, 3)) < clean.mean(dim=(1, 2, 3))).all()
    assert torch.equal(dark, torch.round(dark * 255) / 255)


def test_exposure_oracle_inverts_a_noiseless_darkening():
    gen = torch.Generator().manual_seed(3)
    clean = torch.rand(2, 3, 16, 16, generator=gen) * 0.8 + 0.1
    p = degrade.fixed_lowlight(2, 0.3, gen, "cpu")
    p = degrade.LowLight(p.exposure, p.cast, p.shot_k * 0, p.read * 0, p.gamma)
    back = degrade.undo_exposure(degrade.darken(clean, p, gen), p)
    # Only the 8-bit quantisation of the dark image is lost: at most half a step (0.5/255) of the
    # gamma-2.2 encoded dark image, which the oracle divides by (exposure * cast)^(1/2.2) with the
    # cast at least exp(-0.1): <= 0.00355. 1e-5 covers the float32 powers (~10 roundings of 6e-8).
    bound = 0.5 / 255 / (0.3 * math.exp(-0.1)) ** (1 / 2.2) + 1e-5
    assert (back - clean).abs().max() < bound
