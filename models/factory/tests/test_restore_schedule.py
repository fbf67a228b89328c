"""Resfusion's truncated schedule and sampler (ALGORITHMS.md §3), checked without a network."""
import numpy as np
import pytest

from restore.schedule import draw_noises, sample, truncated_schedule


def test_t12_truncates_to_five_steps_with_the_published_sqrt_alpha_bar():
    sched = truncated_schedule(12)
    assert sched.steps == 5
    # The published values have 5 decimals: half a unit of the last is 5e-6 (float64 adds ~1e-16).
    np.testing.assert_allclose(sched.sqrt_ab, [0.99582, 0.91318, 0.75863, 0.55716, 0.5], atol=5e-6)
    assert sched.alphas_cumprod[-1] == 0.25  # pinned: the cut undershot 0.5 by more than 0.01
    # 5 float64 products: <= 5 * 2^-53 = 5.6e-16 relative.
    np.testing.assert_allclose(np.cumprod(sched.alphas), sched.alphas_cumprod, rtol=1e-15)
    assert sched.posterior_variance[0] == 0.0


def _oracle(sched, clean):
    """A network that knows x0: it returns the true resnoise of whatever state it is given."""
    def net(feed, timestep):
        x, degraded = feed[:, :3].astype(np.float64), feed[:, 3:].astype(np.float64)
        t = int(timestep[0])
        residual = degraded - clean
        eps = (x - sched.sqrt_ab[t] * clean - (1 - sched.sqrt_ab[t]) * residual) / np.sqrt(
            1 - sched.alphas_cumprod[t])
        return eps + sched.resnoise_k[t] * residual
    return net


@pytest.mark.parametrize("deterministic", [False, True])
def test_oracle_network_reproduces_the_clean_image(deterministic):
    sched = truncated_schedule(12)
    rng = np.random.default_rng(0)
    clean = rng.uniform(-1, 1, (2, 3, 8, 8))
    degraded = np.clip(clean + 0.3 * rng.standard_normal(clean.shape), -1, 1)
    calls = []

    def counted(feed, timestep):
        calls.append(timestep.copy())
        return _oracle(sched, clean)(feed, timestep)
    # the float32 network feed costs precision in x_t; the oracle then sees the state it is fed
    out = sample(counted, degraded, draw_noises(rng, clean.shape, sched.steps, deterministic), sched)
    assert [int(t[0]) for t in calls] == [4, 3, 2, 1, 0]
    # The last step (beta_0 = 1 - ab_0) maps the float32 feed of the state exactly onto clean, so
    # only that cast is left: 2^-24 * |x| / sqrt(alpha_0) <= 1.7e-7 for |x| <= 2.8 (measured 6e-8).
    assert np.abs(out - clean).max() < 1e-6


def test_sampler_refuses_the_wrong_number_of_noise_arrays():
    sched = truncated_schedule(12)
    with pytest.raises(ValueError, match="need 5 noise arrays"):
        sample(lambda f, t: f[:, :3], np.zeros((1, 3, 8, 8)), [None] * 4, sched)
