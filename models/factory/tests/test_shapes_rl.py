"""Unit tests of the RL maths (shapes.rl): per-step log-probabilities, PPO-clip, the reward
normalisers, branch selection, the progressive stage schedule, LoRA merging, branched sampling."""
from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from shapes.model import sampling_levels, tiny_model
from shapes.rl.lora import adapter_state, add_lora, apply_adapter, merge
from shapes.rl.policy import ddim_step, make_grid, sample, step_log_prob
from shapes.rl.ppo import ppo_clip_loss
from shapes.rl.rewards import PerPromptStatTracker, StageWindowZScore, select_branches
from shapes.rl.stages import branch_index, split_steps


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = tiny_model(seed=3)
    # tiny_model's UNet starts as a zero predictor; give its output layer weights so ε depends on
    # the input and the text, as a trained model's does.
    with torch.no_grad():
        m.unet.conv_out.weight.normal_(0, 0.05)
    return m


def test_grid_is_the_engines_and_its_last_step_is_the_identity(model):
    grid = make_grid(model.alphas_cumprod, 10)
    levels = sampling_levels(10)  # B's copy of the engine's level list
    assert grid.timesteps.tolist() == levels[:0:-1]
    ac = model.alphas_cumprod.double()
    assert torch.equal(grid.alpha_bar_prev[-1], ac[0])
    sig = grid.sigma(1.0)
    assert sig[-1] == 0 and bool((sig[:-1] > 0).all())
    assert grid.trainable().tolist() == [True] * 9 + [False]
    z, e = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    out, lp = ddim_step(z, e, grid.alpha_bar[-1:].expand(2), grid.alpha_bar_prev[-1:].expand(2),
                        sig[-1:].expand(2), noise=torch.randn_like(z))
    # ᾱ = ᾱ_prev: z − √(1−ᾱ)ε and back, ~6 float32 roundings of values <= |z| + |√(1−ᾱ)ε| <=
    # |z| + 0.15: <= 6 * 2^-24 * (|z| + 0.15) < atol 1e-6 + rtol 1e-5 * |z| (measured 1.2e-7).
    assert torch.allclose(out, z, atol=1e-6) and torch.equal(lp, torch.zeros(2))


def test_log_prob_of_a_sample_under_its_own_step_is_the_averaged_gaussian_density():
    torch.manual_seed(1)
    z, eps, noise = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    a, p = torch.tensor([0.3, 0.5, 0.7], dtype=torch.float64), torch.tensor([0.4, 0.6, 0.8], dtype=torch.float64)
    sig = torch.sqrt((1 - p) / (1 - a) * (1 - a / p))
    x, lp = ddim_step(z, eps, a, p, sig, noise=noise)
    # Its own noise gives −n²/2 − log σ − ½ log 2π per element, averaged.
    expected = (-noise**2 / 2).mean((1, 2, 3)) - torch.log(sig).float() - 0.5 * math.log(2 * math.pi)
    # lp recovers the noise as (x − μ)/σ from the float32 x = μ + σn: off by <= 2^-24 * |x| / σ
    # <= 6e-8 * 4 / 0.29 = 8e-7, so n²/2 by <= |n| * 8e-7 = 3e-6 per element; averaging 256
    # terms (<= 6) rounds by ~8 * 2^-24 * 6 = 3e-6. Worst case 6e-6 < 1e-5 (measured 1.2e-7).
    assert torch.allclose(lp, expected, atol=1e-5)
    # Scoring the stored sample repeats the sampling step's float ops on the same values: the
    # same bits.
    _, again = ddim_step(z, eps, a, p, sig, prev_sample=x)
    assert torch.equal(again, lp)
    x0 = (z - torch.sqrt(1 - a).float().view(-1, 1, 1, 1) * eps) / torch.sqrt(a).float().view(-1, 1, 1, 1)
    mean = torch.sqrt(p).float().view(-1, 1, 1, 1) * x0 + torch.sqrt(1 - p - sig**2).float().view(-1, 1, 1, 1) * eps
    normal = torch.distributions.Normal(mean, sig.float().view(-1, 1, 1, 1))
    # The same float32 formula with its constants folded differently: a few ulps of terms <= 6,
    # ~2e-6, inside 1e-5 (measured 0).
    assert torch.allclose(normal.log_prob(x).mean((1, 2, 3)), lp, atol=1e-5)
    # A sample far from the mean is less likely.
    _, far = ddim_step(z, eps, a, p, sig, prev_sample=x + 3 * sig.float().view(-1, 1, 1, 1))
    assert bool((far < lp).all())


def test_ppo_clip_at_ratio_one_is_the_policy_gradient_and_clips_beyond():
    lp = torch.zeros(4, requires_grad=True)
    adv = torch.tensor([1.0, -2.0, 7.0, -9.0])
    loss = ppo_clip_loss(lp, torch.zeros(4), adv, clip=0.1)
    clipped_adv = torch.tensor([1.0, -2.0, 5.0, -5.0])  # advantages clipped to ±5
    # Sums of small integers over 4: exact in float32, so pytest's default rel 1e-6 is only slack.
    assert loss.item() == pytest.approx(-clipped_adv.mean().item())
    loss.backward()
    assert torch.allclose(lp.grad, -clipped_adv / 4)
    # ρ = e^0.2 > 1 + ε with A > 0: clipped, no gradient; with A < 0 the unclipped term wins.
    lp2 = torch.full((2,), 0.2, requires_grad=True)
    ppo_clip_loss(lp2, torch.zeros(2), torch.tensor([1.0, -1.0]), clip=0.1).backward()
    assert lp2.grad[0] == 0 and lp2.grad[1] > 0


def test_stage_window_z_score_uses_this_and_up_to_eight_previous_stages():
    zs = StageWindowZScore(history=8)
    z = zs.update(["a"] * 5, np.array([1, 0, 0, 0, 0]))
    # float64 means and stds of <= 6 values: ~1e-15 relative; rel 1e-6 is slack, not a measurement.
    assert z[0] == pytest.approx((1 - 0.2) / np.std([1, 0, 0, 0, 0], ddof=1), rel=1e-6)
    assert z[1] == pytest.approx((0 - 0.2) / np.std([1, 0, 0, 0, 0], ddof=1), rel=1e-6)
    # No spread within the pool → no signal; a prompt seen once → no signal.
    assert np.all(StageWindowZScore().update(["b"] * 3, np.ones(3)) == 0)
    assert StageWindowZScore().update(["c"], np.array([1.0]))[0] == 0
    # History: stage rewards of "a" pool with the earlier ones until they leave the window.
    zs = StageWindowZScore(history=2)
    zs.update(["a", "a"], np.array([0.0, 0.0]))
    zs.update(["a", "a"], np.array([0.0, 0.0]))
    z = zs.update(["a", "a"], np.array([1.0, 0.0]))  # pool: 0,0,0,0,1,0
    pool = np.array([0, 0, 0, 0, 1, 0.0])
    assert z[0] == pytest.approx((1 - pool.mean()) / pool.std(ddof=1), rel=1e-6)
    z = zs.update(["a", "a"], np.array([1.0, 0.0]))  # the first stage left: 0,0,1,0,1,0
    pool = np.array([0, 0, 1, 0, 1, 0.0])
    assert z[0] == pytest.approx((1 - pool.mean()) / pool.std(ddof=1), rel=1e-6)


def test_ddpo_tracker_uses_the_batch_until_a_prompt_has_min_count_rewards():
    tr = PerPromptStatTracker(buffer_size=4, min_count=4)
    adv = tr.update(["a", "a", "b", "b"], np.array([1.0, 0.0, 1.0, 1.0]))
    batch = np.array([1.0, 0.0, 1.0, 1.0])
    # float64 statistics of 4 values (~1e-16); pytest's default rel 1e-6 is slack.
    assert adv[0] == pytest.approx((1 - batch.mean()) / (batch.std() + 1e-6))
    adv = tr.update(["a", "a"], np.array([1.0, 1.0]))  # "a" now has 4: its own buffer 1,0,1,1
    buf = np.array([1.0, 0.0, 1.0, 1.0])
    assert adv[0] == pytest.approx((1 - buf.mean()) / (buf.std() + 1e-6))


def test_branch_selection_thresholds():
    z = np.array([0.49, 0.0, -0.3, 0.1, -0.49,     # nothing reaches ±0.5
                  0.5, 0.0, -0.5, 0.2, 0.1,        # best 0.5 is positive; worst −0.5 is not < −0.5
                  1.2, -0.8, -0.8, 0.3, 0.0])      # positive 1.2 and the first −0.8 as negative
    chosen = select_branches(z, 5)
    assert [(c.row, c.z) for c in chosen] == [(5, 0.5), (10, 1.2), (11, -0.8)]
    # Groups of one (no branching): each sample on its own side of the thresholds.
    single = select_branches(np.array([0.7, -0.7, 0.2]), 1)
    assert [(c.row, c.z) for c in single] == [(0, 0.7), (1, -0.7)]
    with pytest.raises(ValueError):
        select_branches(np.zeros(7), 5)


def test_progressive_schedule_grows_from_s_min_to_all_steps():
    s = [split_steps(i, 100, 14, 20) for i in range(100)]
    assert s[0] == 14 and s[-1] == 20
    assert all(b - a in (0, 1) for a, b in zip(s, s[1:]))
    assert sorted(set(s)) == list(range(14, 21))
    assert [branch_index(i, 100, 14, 20) for i in (0, 99)] == [6, 0]
    assert {split_steps(i, 10, 14, 20, progressive=False) for i in range(10)} == {20}
    with pytest.raises(ValueError):
        split_steps(0, 10, 21, 20)


def test_branches_share_their_trunk_and_stored_log_probs_are_recomputed(model, float64):
    # In float64: step_log_prob evaluates the 30 stored steps in one batch, the sampler in batches
    # of 4 and 12 (guided), and float32 ε differs between batch shapes by ~1e-6 (times up to 7
    # with guidance 3); the last trainable step (σ = 0.029) divides that into the log-density:
    # measured 5e-7 on one thread, 0 on two, ~1e-4 in the worst case. In float64 the same path is
    # ~1e-12 * 0.5 / 0.029 = 2e-11 apart, so 1e-5 fails only on a real mismatch.
    model = float64(copy.deepcopy(model))
    grid = make_grid(model.alphas_cumprod, 6)
    with torch.no_grad():
        cond = model.encode_text(model.tokenize(["a red circle", "a blue square above a red circle"]))
        uncond = model.encode_text(model.tokenize([""]))
    gen = torch.Generator().manual_seed(0)
    initial = torch.randn((2, 4, 16, 16), generator=gen, dtype=torch.float64)
    traj = sample(model, grid, cond, uncond, 3.0, 1.0, gen, branch_at=2, branches=3,
                  initial=initial)
    assert traj.latents.shape == (6, 7, 4, 16, 16) and traj.rows.tolist() == [0, 0, 0, 1, 1, 1]
    trunk = traj.latents[:3, :3]
    assert torch.equal(trunk[0], trunk[1]) and torch.equal(trunk[0], trunk[2])
    assert not torch.equal(traj.latents[0, 3], traj.latents[1, 3])
    # ρ = 1 before any update: the training-time log-prob reproduces the stored one.
    r = torch.arange(6).repeat_interleave(5)
    s = torch.arange(5).repeat(6)
    lp = step_log_prob(model, grid, traj.latents[r, s], traj.latents[r, s + 1], s,
                       cond[traj.rows[r]], uncond, 3.0, 1.0)
    assert torch.allclose(lp, traj.log_probs[r, s], atol=1e-5)


def test_lora_starts_at_the_base_and_merges_to_the_same_function():
    torch.manual_seed(0)
    m = tiny_model(seed=5)
    with torch.no_grad():
        m.unet.conv_out.weight.normal_(0, 0.05)
    z, t, c = torch.randn(2, 4, 16, 16), torch.tensor([10, 500]), torch.randn(2, 12, 16)
    with torch.no_grad():
        before = m.eps(z, t, c)
    params = add_lora(m.unet, rank=4)
    assert params and all(p.requires_grad for p in params)
    assert not any(p.requires_grad for n, p in m.unet.named_parameters() if "base" in n)
    with torch.no_grad():
        # B = 0: each adapted projection adds exact zeros to the same base output.
        assert torch.equal(m.eps(z, t, c), before)
        for p in params:
            p.add_(torch.randn_like(p) * 0.1)
        adapted = m.eps(z, t, c)
    assert not torch.allclose(adapted, before, atol=1e-4)
    state = adapter_state(m.unet)
    merge(m.unet)
    # Only the 56 adapted projections compute differently (W'x with W' rounded once to float32, vs
    # Wx + s·B(Ax)): ~2^-24 * sqrt(16) = 2.4e-7 relative per output of their 16-term sums; over
    # the 56, ~sqrt(56) * 2.4e-7 = 1.8e-6 relative, 2.5e-6 at |eps| <= 1.4, against atol 1e-5 +
    # rtol 1e-5 * |eps| (measured 1.2e-6).
    with torch.no_grad():
        assert torch.allclose(m.eps(z, t, c), adapted, atol=1e-5)
    # The saved adapter applied to a fresh base gives bit-identical merged weights.
    fresh = tiny_model(seed=5)
    with torch.no_grad():
        fresh.unet.conv_out.weight.copy_(m.unet.conv_out.weight)
    apply_adapter(fresh.unet, state)
    for (name, a), (_, b) in zip(sorted(m.unet.state_dict().items()), sorted(fresh.unet.state_dict().items())):
        assert torch.equal(a, b), name


def _history(path, method, seed, curve, final_held, final_seen=0.1, pixel=0.2):
    import json

    d = path / ("base" if method == "base" else f"{method}-seed{seed}")
    d.mkdir()
    evals = [{"queries": q, "seconds": 0.0, "seen_two@eta0": v, "heldout_two@eta0": v} for q, v in curve]
    final = {"seen_two@eta0": final_seen, "heldout_two@eta0": final_held, "pixel_diversity": pixel}
    (d / "history.json").write_text(json.dumps({"method": method, "seed": seed, "queries": curve[-1][0],
                                                "evals": evals, "final": final}))


def test_summary_compares_at_equal_queries_and_checks_the_goals(tmp_path):
    import json

    from shapes.rl.summary import summarize

    _history(tmp_path, "base", 0, [(0, 0.1)], 0.10, pixel=0.20)
    _history(tmp_path, "b2", 0, [(0, 0.1), (100, 0.2), (200, 0.3)], 0.30, final_seen=0.4, pixel=0.19)
    _history(tmp_path, "b2", 1, [(0, 0.1), (100, 0.3), (200, 0.2)], 0.20, final_seen=0.2, pixel=0.19)
    # DDPO stopped at 100 queries (time cap): the comparison happens there.
    _history(tmp_path, "ddpo", 0, [(0, 0.1), (100, 0.15)], 0.15, pixel=0.2)
    s = summarize(tmp_path, lambda _: None, plot=False)
    # Means, differences and ratios of the float64 numbers above: ~1e-16; default rel 1e-6.
    assert s["equal_queries"]["queries"] == 100
    assert s["equal_queries"]["b2"]["heldout_two@eta0"]["mean"] == pytest.approx(0.25)
    g = s["goals"]
    assert g["b2_heldout_gain_points"] == pytest.approx(15.0) and g["b2_heldout_gain_met"]
    assert g["b2_minus_ddpo_heldout_points_at_equal_queries"] == pytest.approx(10.0)
    assert g["b2_diversity_ratio"] == pytest.approx(0.95) and g["b2_diversity_met"]
    assert s["export"]["b2"] == "b2-seed0/model.pt"  # chosen on seen prompts, not held-out
    assert json.loads((tmp_path / "summary.json").read_text())["goals"] == g


# ---------------------------------------------------------------- issue 12: the CPU sanity check

def test_one_step_toy_positive_advantage_moves_the_mean_toward_the_sample_negative_away():
    # The policy's step with ε itself as the parameter θ: μ(θ) = c_x·z + c_ε·θ is linear, so one
    # SGD step on the PPO loss at ρ = 1 (−A·∇log π) moves μ exactly along x − μ:
    #   μ' − μ = k·(x − μ),  k = lr·A·c_ε² / (σ²·N)  (N elements, log π averaged over them).
    # float64 throughout: each side is a handful of roundings of values <= ~5, so they agree to
    # ~10·2^-53·5 ≈ 6e-15; atol 1e-12 only leaves room for that.
    from shapes.model import scaled_linear_alphas_cumprod

    grid = make_grid(scaled_linear_alphas_cumprod(), 20)
    i = 6
    a, p, sig = grid.alpha_bar[i:i + 1], grid.alpha_bar_prev[i:i + 1], grid.sigma(1.0)[i:i + 1]
    gen = torch.Generator().manual_seed(0)
    z, theta, noise = (torch.randn((1, 4, 16, 16), generator=gen, dtype=torch.float64) for _ in range(3))
    x, old = ddim_step(z, theta, a, p, sig, noise=noise)
    mean0 = x - sig.item() * noise
    n = x.numel()
    c_eps = float(torch.sqrt(1 - p - sig**2) - torch.sqrt(p) * torch.sqrt(1 - a) / torch.sqrt(a))
    lr = 0.2 * sig.item() ** 2 * n / c_eps**2  # k = ±0.2
    for adv in (1.0, -1.0):
        th = theta.clone().requires_grad_(True)
        _, lp = ddim_step(z, th, a, p, sig, prev_sample=x)
        assert abs(float(lp - old)) < 1e-12  # ρ = 1: the same bits up to float64 rounding
        ppo_clip_loss(lp, old, torch.tensor([adv], dtype=torch.float64), clip=0.1).backward()
        with torch.no_grad():
            new_mean, _ = ddim_step(z, th - lr * th.grad, a, p, sig, noise=torch.zeros_like(z))
        k = lr * adv * c_eps**2 / (sig.item() ** 2 * n)
        assert k == pytest.approx(0.2 * adv, rel=1e-12)
        assert torch.allclose(new_mean - mean0, k * (x - mean0), rtol=0, atol=1e-12)
        before, after = float((x - mean0).norm()), float((x - new_mean).norm())
        assert (after < before) if adv > 0 else (after > before)


def test_trainer_recomputes_the_sampling_log_probs_in_float32_for_both_guided_branches(model):
    # The sanity trainer's own path (ppo_update) with lr 0: every minibatch sees the sampling
    # weights, recomputed in micro-batches of other shapes than the sampler's (branched, batch 6
    # at the trunk and 12 after; here 5 pairs per micro-batch). float32 ε of one input differs
    # between batch shapes by a few ulps of its accumulations (~1e-6 relative), times ≤ 1 + 2g =
    # 7 through guidance; in log π that is |n|·|c_ε|·δε/σ per element, ≲ 4·1·7e-6/0.05 ≈ 6e-4 in
    # the worst element, and the mean over 1024 elements of such signed terms is far smaller.
    # 1e-4, DDPO's clip range, is the line: above it the clip would act on rounding noise.
    from shapes.rl.sanity import TINY, Method, ppo_update, trained_steps

    grid = make_grid(model.alphas_cumprod, 6)
    with torch.no_grad():
        cond = model.encode_text(model.tokenize(["a red circle", "a blue square"]))
        uncond = model.encode_text(model.tokenize([""]))
    gen = torch.Generator().manual_seed(1)
    traj = sample(model, grid, cond, uncond, 3.0, 1.0, gen, branch_at=1, branches=6)
    params = list(model.unet.parameters())
    flags = [p.requires_grad for p in params]
    opt = torch.optim.SGD(params, lr=0.0)
    steps = trained_steps(grid, 1, 0)
    assert steps == [1, 2, 3, 4]  # σ = 0 at the last step: never trained
    cfg = replace(TINY, micro_pairs=5 * len(steps), samples_per_step=5, guidance=3.0, kl_stop=1.0,
                  pairs_per_row=None)
    with torch.enable_grad():
        for p in params:
            p.requires_grad_(True)
        try:
            stats = ppo_update(model, params, opt, grid, traj, cond, uncond, np.arange(12),
                               np.linspace(-1, 1, 12), steps, Method("x", lr=0.0, clip=1e-4),
                               cfg, np.random.default_rng(0))
        finally:
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)
    assert stats["updates"] == 3 and not stats["kl_stopped"]
    assert stats["ratio_dev0"] < 1e-4
    assert stats["approx_kl_max"] < 0.5 * 1e-4**2  # every pair's |log ρ| below 1e-4 on average


def test_group_z_and_trained_steps():
    from shapes.model import scaled_linear_alphas_cumprod
    from shapes.rl.sanity import group_z, trained_steps

    r = np.array([1, 0, 0, 1, 1, 1, 0.0])
    g = np.array([0, 0, 0, 1, 1, 1, 2])
    z = group_z(r, g)
    s = np.std([1, 0, 0], ddof=1)
    # float64 statistics of three values: ~1e-16; rel 1e-12 is slack only.
    assert z[:3] == pytest.approx([(1 - 1 / 3) / s, -1 / 3 / s, -1 / 3 / s], rel=1e-12)
    assert np.all(z[3:] == 0)  # no spread, or a group of one: no signal
    grid = make_grid(scaled_linear_alphas_cumprod(), 20)
    steps = trained_steps(grid, 0, 100)
    assert [int(grid.timesteps[i]) for i in steps] == list(range(950, 99, -50))
    assert trained_steps(grid, 2, 100)[0] == 2 and int(grid.timesteps[2]) == 850


def test_pack_rebuild_matches_onnxruntime():
    pytest.importorskip("onnxruntime")
    from shapes import config
    from shapes.rl.rebuild import model_from_pack, pack_parity

    pack = config.PACKS / "shapes-base"
    if not (pack / "unet.onnx").is_file():
        pytest.skip("shapes-base pack not present")
    model = model_from_pack(pack)
    # Export tolerance per graph (export.GRAPH_TOLERANCE); the rebuilt weights are the exported
    # float32 values, so only kernel rounding remains (measured ~2e-6).
    assert max(pack_parity(model, pack).values()) < 1e-4


def test_rl_sanity_end_to_end_on_a_tiny_budget_and_resumes(tmp_path, capsys):
    import json

    from shapes.model import save_model, tiny_model
    from shapes.rl import sanity

    base = save_model(tiny_model(seed=2), tmp_path / "tiny.pt")
    out = tmp_path / "sanity"
    logs: list[str] = []
    # Two worker processes, as `python -m shapes --rl-sanity` runs it.
    result = sanity.run_sanity(out, sanity.TINY, logs.append, base=base, parallel=True)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(line["rl_sanity"]["eta1"]) == {"base", "ddpo", "b2"}
    assert result["eval_images"] == 24 and result["curve_images"] == 12
    for m in ("ddpo", "b2"):
        curve = result["curves"][m]
        assert [c["queries"] for c in curve] == [0, 24, 36]
        assert (out / m / "history.json").is_file() and (out / m / "unet.pt").is_file()
        assert result["max_ratio_dev0"][m] < 1e-4
    assert json.loads((out / "curves.json").read_text()).keys() == {"images_per_point", "ddpo", "b2"}
    # A second start (in process) finds every run finished: nothing is trained again, the same
    # numbers.
    before = json.loads((out / "ddpo" / "history.json").read_text())
    again = sanity.run_sanity(out, sanity.TINY, logs.append, base=base, parallel=False)
    assert any("resumed at round 3" in m for m in logs)
    assert json.loads((out / "ddpo" / "history.json").read_text())["rounds"] == before["rounds"]
    assert again["alignment"] == result["alignment"]
    # Changing one method's settings restarts that run only (and not the base evaluation).
    logs.clear()
    changed = replace(sanity.TINY, b2=replace(sanity.TINY.b2, lr=2e-5))
    sanity.run_sanity(out, changed, logs.append, base=base, parallel=False)
    assert any("ddpo: resumed at round 3" in m for m in logs)
    assert any("b2: saved state is for another config" in m for m in logs)
    assert not any(m.startswith("base eval") for m in logs)


def test_numpy_matmul_gives_torchs_products_and_gradients(model, float64):
    # In float64 both BLAS paths round sums of <= 256 products of values <= ~10 at ~1e-16
    # relative: 1e-10 (relative to the output's scale) is slack, not a measurement.
    from shapes.rl.fastmm import numpy_matmul

    m = float64(copy.deepcopy(model))
    gen = torch.Generator().manual_seed(4)
    z = torch.randn((3, 4, 16, 16), generator=gen, dtype=torch.float64)
    t = torch.tensor([10, 500, 990])
    with torch.no_grad():
        c = m.encode_text(m.tokenize(["a red circle", "a blue square", ""]))

    def run():
        for p in m.unet.parameters():
            p.grad = None
            p.requires_grad_(True)
        e = m.eps(z, t, c)
        (e * torch.linspace(-1, 1, e.numel(), dtype=torch.float64).view_as(e)).sum().backward()
        return e.detach(), [p.grad.clone() for p in m.unet.parameters()]

    ref, gref = run()
    with numpy_matmul():
        out, g = run()
    assert torch.allclose(out, ref, rtol=0, atol=1e-10 * float(ref.abs().max()))
    for a, b in zip(g, gref):
        assert torch.allclose(a, b, rtol=0, atol=1e-10 * (float(b.abs().max()) + 1e-12))
    # Outside the block torch's own product is back.
    from shapes.rl import fastmm

    assert torch.nn.functional.linear is not fastmm.numpy_linear
    assert torch.Tensor.__matmul__ is fastmm._ORIGINAL_MATMUL
