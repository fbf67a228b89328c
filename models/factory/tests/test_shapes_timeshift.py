"""Time-Shift sampling as the engine does it (time-shift.ts), on toy denoisers and a tiny model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from shapes import timeshift
from shapes.model import ddim_sample, scaled_linear_alphas_cumprod, tiny_model


class GaussianToy(torch.nn.Module):
    """The exact ε-predictor for data x0 ~ N(0, s²) per entry, times `gain` (< 1 under-predicts).

    E[ε | z_t] = √(1−ᾱ)·z / (ᾱ s² + 1 − ᾱ). Implements just what the sampler uses of ShapesModel.
    """

    def __init__(self, data_var: float = 0.0, gain: float = 1.0):
        super().__init__()
        self.register_buffer("alphas_cumprod", scaled_linear_alphas_cumprod())
        self.data_var, self.gain = data_var, gain
        self.calls: list[list[int]] = []

    @property
    def device(self):
        return self.alphas_cumprod.device

    def tokenize(self, prompts):
        return torch.zeros((len(prompts), 1), dtype=torch.long)

    def encode_text(self, ids):
        return torch.zeros((ids.shape[0], 1, 1))

    def eps(self, z, t, states):
        self.calls.append(t.tolist())
        a = self.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        return self.gain * (1 - a).sqrt() * z / (a * self.data_var + 1 - a)


def toy_noise(batch=4, seed=0):
    return torch.randn((batch, 4, 16, 16), generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def test_levels_match_the_engine_grid():
    assert timeshift.sampling_levels(10) == [-100, 0, 100, 200, 300, 400, 500, 600, 700, 800, 900]
    assert timeshift.sampling_levels(3) == [-333, 0, 333, 666]
    with pytest.raises(ValueError, match="steps"):
        timeshift.sampling_levels(0)


def test_shifted_timestep_window_neighbours_cutoff_and_ties():
    abar = scaled_linear_alphas_cumprod().numpy()
    # Variance exactly at 1 − ᾱ_457: chosen when inside the window and between the neighbours.
    v = 1 - abar[457]
    assert timeshift.shifted_timestep(abar, v, 450, 400, 500, 20, 300) == 457
    assert timeshift.shifted_timestep(abar, v, 450, 400, 500, 10, 300) == 455  # h = 5
    assert timeshift.shifted_timestep(abar, v, 450, 400, 456, 20, 300) == 455  # strictly below 456
    assert timeshift.shifted_timestep(abar, v, 450, 400, 500, 0, 300) == 450
    assert timeshift.shifted_timestep(abar, v, 450, 400, 500, 20, 450) == 450  # at the cutoff
    assert timeshift.shifted_timestep(abar, v, -50, None, 0, 20, 0) == -50
    # Far below every candidate: the smallest τ is the closest; with a flat target, ties go low.
    assert timeshift.shifted_timestep(abar, -5.0, 450, 400, 500, 1000, 0) == 401
    flat = np.full(1000, 0.5)
    assert timeshift.shifted_timestep(flat, 0.1, 450, 400, 500, 1000, 0) == 401
    # Data-variance target ᾱ·v̂0 + 1 − ᾱ.
    v = abar[620] * 0.3 + 1 - abar[620]
    assert timeshift.shifted_timestep(abar, v, 600, 500, 700, 100, 0, data_variance=0.3) == 620


def test_sample_variance_is_the_unbiased_variance_of_the_whole_sample():
    x = np.random.default_rng(0).normal(size=(4, 8, 8))
    # Two float64 two-pass variances of 256 values: ~256 * 2^-53 = 3e-14 relative apart at most.
    assert timeshift.sample_variance(x) == pytest.approx(np.var(x, ddof=1), rel=1e-12)


@pytest.mark.parametrize("steps", [3, 6])
def test_window_zero_is_plain_ddim_bit_for_bit(steps):
    model = tiny_model()
    prompts = ["a red circle", "a blue square left of a green triangle"]
    noise = toy_noise(2, seed=steps)
    plain = ddim_sample(model, prompts, noise, steps, 5.0)
    for variant in ("paper", "released-code", "data-variance"):
        z, shifted = timeshift.sample_latents(model, prompts, noise, steps, 5.0, 0, 0, variant)
        assert torch.equal(z, plain)
        levels = timeshift.sampling_levels(steps)
        assert shifted == [[levels[k - 1]] * 2 for k in range(steps, 0, -1)]
    # A cutoff above the grid disables shifting too.
    z, _ = timeshift.sample_latents(model, prompts, noise, steps, 5.0, 200, 999)
    assert torch.equal(z, plain)


@pytest.mark.parametrize("variant", ["paper", "data-variance", "released-code"])
def test_shifts_only_after_the_first_step_above_the_cutoff_and_between_grid_points(variant):
    toy = GaussianToy(gain=0.9)
    steps, cutoff = 10, 350
    levels = timeshift.sampling_levels(steps)
    _, shifted = timeshift.sample_latents(toy, [""] * 3, toy_noise(3), steps, 1.0,
                                          window=1000, cutoff=cutoff, variant=variant)
    # The first network call is at the top level for every row (the guided batch has 2 × rows).
    assert toy.calls[0] == [levels[-1]] * 6
    moved = 0
    for j, row in enumerate(shifted):
        k = steps - j
        nominal = levels[k - 1]
        for tau in row:
            if nominal <= cutoff or k == 1 or (variant == "released-code" and j == 0):
                assert tau == nominal
            else:
                assert levels[k - 2] < tau < levels[k]
                moved += tau != nominal
    assert moved > 0
    if variant != "released-code":
        # Paper semantics: each network call after the first is at the shifted level.
        for j, row in enumerate(shifted[:-1]):
            assert toy.calls[j + 1] == row + row


def test_exact_denoiser_barely_shifts_and_under_prediction_shifts_up():
    steps = 10
    noise = toy_noise(8, seed=1)
    _, exact = timeshift.sample_latents(GaussianToy(), [""] * 8, noise, steps, 1.0, 1000, 0)
    z_plain, _ = timeshift.sample_latents(GaussianToy(gain=0.97), [""] * 8, noise, steps, 1.0, 0, 0)
    z_ts, under = timeshift.sample_latents(GaussianToy(gain=0.97), [""] * 8, noise, steps, 1.0,
                                           1000, 0)
    levels = timeshift.sampling_levels(steps)

    def moves(shifted):
        return np.array([[t - levels[steps - 1 - j] for t in row] for j, row in
                         enumerate(shifted[:-1])])

    # Moves are integers (argmin over candidate timesteps); rounding can only flip a near-exact tie,
    # moving a mean over these 72 entries by 1/72. Measured 9.18 (59 flips from 10) and 28.7.
    assert np.abs(moves(exact)).mean() < 10
    assert moves(under).mean() > np.abs(moves(exact)).mean() + 5
    # Shifting up removes more noise: the leftover variance (the data is 0) is lower.
    assert z_ts.var() < z_plain.var()


def test_data_variance_target_follows_data_with_variance_where_the_paper_rule_drifts():
    steps, noise = 10, toy_noise(8, seed=2)
    toy = GaussianToy(data_var=0.5)
    levels = timeshift.sampling_levels(steps)

    def mean_move(variant):
        _, shifted = timeshift.sample_latents(toy, [""] * 8, noise, steps, 1.0, 1000, 0, variant)
        return np.mean([[t - levels[steps - 1 - j] for t in row]
                        for j, row in enumerate(shifted[:-1])])

    # State variance ᾱs² + 1 − ᾱ exceeds the paper's 1 − ᾱ target: the paper rule shifts up. The
    # variant's v̂0 (variance of the posterior-mean x̂0) shrinks at high noise, so it still shifts
    # up some, but clearly less.
    paper, data = mean_move("paper"), mean_move("data-variance")
    # Integer moves again (1/72 per flipped tie): measured 49.6 and 37.1.
    assert paper > 20 and data < paper - 8


def test_bad_settings_are_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match="variant"):
        timeshift.sample_latents(model, ["a red circle"], toy_noise(1), 4, 5.0, 10, 0, "nope")
    with pytest.raises(ValueError, match="window"):
        timeshift.sample_latents(model, ["a red circle"], toy_noise(1), 4, 5.0, -1, 0)


def test_recommendation_needs_a_clear_win():
    row = {"steps": 20, "variant": "off", "window": 0, "cutoff": 0, "fd": 10.0, "alignment": 0.5}
    ts = {"steps": 20, "variant": "paper", "window": 80, "cutoff": 300, "label": "TS",
          "fd": 9.0, "alignment": 0.5, "delta_fd": -1.0, "delta_fd_se": 0.2,
          "delta_alignment": 0.0, "delta_alignment_se": 0.02}
    rec = timeshift.recommend({"rows": [row, ts]})
    assert rec["timeShift"] == {"window": 80, "cutoff": 300, "variant": "paper"}
    noisy = dict(ts, delta_fd_se=0.6)
    assert timeshift.recommend({"rows": [row, noisy]})["timeShift"] is None
    worse_alignment = dict(ts, delta_alignment=-0.1)
    assert timeshift.recommend({"rows": [row, worse_alignment]})["timeShift"] is None


def test_smoke_run_writes_a_table_with_paired_deltas(tmp_path):
    from shapes.model import save_model

    path = save_model(tiny_model(), tmp_path / "tiny.pt")
    out = tmp_path / "timeshift.json"
    assert timeshift.main(["--model", str(path), "--out", str(out), "--smoke"]) == 0
    table = json.loads(out.read_text())
    assert table["format"] == "shapes-timeshift/1" and table["smoke"] is True
    assert [r["variant"] for r in table["rows"]] == ["off", "paper", "data-variance"]
    base, *shifted = table["rows"]
    assert "delta_fd" not in base and base["shifted_fraction"] == 0
    for row in shifted:
        # delta_fd is fd − base fd in float64 (JSON keeps all 17 digits): one rounding apart.
        assert row["fd"] == pytest.approx(base["fd"] + row["delta_fd"])
        assert row["delta_fd_se"] >= 0 and 0 <= row["alignment"] <= 1
    assert "timeShift" in table["recommendation"]
