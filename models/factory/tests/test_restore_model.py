"""The restoration UNet's contract: size budget, any multiple-of-8 size, per-row timesteps."""
import torch

from restore.model import build, count_parameters


def test_unet_fits_the_parameter_budget():
    assert count_parameters(build()) <= 4_000_000


def test_unet_runs_at_any_multiple_of_8_and_keeps_the_size():
    torch.manual_seed(0)
    model = build().eval()
    for h, w in ((8, 8), (24, 40), (64, 48)):
        with torch.no_grad():
            out = model(torch.randn(2, 6, h, w), torch.tensor([4, 0]))
        assert out.shape == (2, 3, h, w)


def test_each_batch_row_uses_its_own_timestep():
    torch.manual_seed(0)
    model = build().eval()
    for p in model.parameters():  # break the zero-initialised identity so the step matters
        torch.nn.init.normal_(p, std=0.05)
    # In float64: a float32 row computed in a batch of 2 and alone takes other kernel paths and
    # was 3e-6 apart (|out| ~1.4), a third of the tolerance, at the mercy of the CPU. In float64
    # 24 convolutions of <= 1584-term sums round to <= 24 * 1584 * 2^-53 * |out| ~ 6e-12, so 1e-5
    # can only fail if a row sees another row's step (that moves the output by ~0.05).
    model = model.double()
    x = torch.randn(1, 6, 16, 16, dtype=torch.float64).repeat(2, 1, 1, 1)
    with torch.no_grad():
        mixed = model(x, torch.tensor([4, 1]))
        row1 = model(x[1:], torch.tensor([1]))
    assert torch.allclose(mixed[1:], row1, atol=1e-5)
    assert not torch.allclose(mixed[0], mixed[1], atol=1e-3)
