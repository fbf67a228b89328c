"""Shapes networks, checkpoint and export: the interface others build on, and the pack contract.

Uses `tiny_model()` (random weights), so it runs in seconds and needs no trained checkpoint.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from common.vectors import read_vectors
from shapes import config, world
from shapes.export import (DEFAULTS, PARITY_PROMPT, _parity_inputs, export_networks, export_pack,
                           parity_vectors)
from shapes.model import ddim_sample, load_model, sampling_levels, save_model, tiny_model


def test_vocabulary_covers_every_prompt_word():
    words = {w for split in ("train", "heldout") for p in world.all_prompts(split) for w in p.split()}
    assert words <= set(config.WORDS)


def test_tokenize_pads_with_zero_and_empty_prompt_is_all_padding():
    m = tiny_model()
    ids = m.tokenize(["a red circle left of a blue square", "", "A RED purple"])
    assert ids.shape == (3, config.MAX_LENGTH) and ids.dtype == torch.long
    assert ids[1].eq(0).all()
    assert ids[0, 8:].eq(0).all() and ids[0, :8].ne(0).all()
    assert ids[2, 2].item() == m.vocab[config.UNK] and ids[2, 1].item() == m.vocab["red"]


def test_interface_shapes_and_per_row_timesteps(float64):
    m = tiny_model()
    states = m.encode_text(m.tokenize(["a red circle", "a blue square above a red circle"]))
    assert states.shape == (2, config.MAX_LENGTH, m.cfg.text_dim)
    z = m.encode(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    assert z.shape == (2, 4, 16, 16)
    assert m.decode(z).shape == (2, 3, 64, 64)
    # Per-row timesteps, in float64: float32 rows computed in a batch of 2 and alone were 2e-6
    # apart (|eps| ~1.7), a fifth of the tolerance, depending on the CPU's kernels. In float64
    # ~30 layers of <= 288-term sums round to ~30 * 288 * 2^-53 * |eps| ~ 2e-12 (plus an ulp of
    # the float32 embedding, ~1e-7), so 1e-5 fails only if a row sees the other row's step
    # (that moves eps by ~0.2).
    m64 = float64(copy.deepcopy(m))
    with torch.no_grad():
        both = m64.eps(z.double(), torch.tensor([10, 900]), states.double())
        one = m64.eps(z[1:].double(), torch.tensor([900]), states[1:].double())
    torch.testing.assert_close(both[1:], one, rtol=1e-5, atol=1e-5)
    assert m.alphas_cumprod.dtype == torch.float64 and m.alphas_cumprod.shape == (1000,)
    # Stable Diffusion's scaled-linear check values (ALGORITHMS.md). 1 - beta_0 is one float64
    # rounding from 0.99915 (1.1e-16); the reference for t = 780 has 10 decimals (rounding
    # <= 5e-11) and the float64 cumulative product of 781 factors adds <= 781 * 2^-53 * 0.044.
    assert m.alphas_cumprod[0].item() == pytest.approx(0.99915, abs=1e-12)
    assert m.alphas_cumprod[780].item() == pytest.approx(0.0438269723, abs=1e-9)


def test_save_load_round_trip_is_exact(tmp_path):
    m = tiny_model(seed=3)
    m.latent_scale = 0.77
    path = save_model(m, tmp_path / "m.pt")
    back = load_model(path)
    assert back.latent_scale == 0.77
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(m.encode(x), back.encode(x))
    with pytest.raises(ValueError, match="not a Shapes checkpoint"):
        torch.save({"weights": 1}, tmp_path / "bad.pt")
        load_model(tmp_path / "bad.pt")


def test_sampling_levels_match_the_engine_grid():
    assert sampling_levels(10) == [-100, 0, 100, 200, 300, 400, 500, 600, 700, 800, 900]
    with pytest.raises(ValueError):
        sampling_levels(0)


def test_ddim_with_zero_guidance_ignores_the_prompt():
    m = tiny_model()
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    a = ddim_sample(m, ["a red circle"], noise, 3, guidance=0.0)
    b = ddim_sample(m, ["a blue square"], noise, 3, guidance=0.0)
    c = ddim_sample(m, ["a blue square"], noise, 3, guidance=5.0)
    assert a.dtype == torch.float64
    assert torch.equal(a, b) and not torch.equal(b, c)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("packs")
    m = tiny_model(seed=1)
    m.latent_scale = 1.3
    ckpt = save_model(m, root / "model.pt")
    result = export_pack(ckpt, root / "shapes-base", "shapes-base", root / "parity.safetensors",
                         log=lambda _: None)
    return root, result


def test_export_writes_a_valid_pack(exported):
    root, result = exported
    folder = root / "shapes-base"
    manifest = json.loads((folder / "pack.json").read_text())
    assert manifest["format"] == "retrace-pack/1" and manifest["id"] == "shapes-base"
    assert manifest["latent"] == {"channels": 4, "downsample": 4, "scale": 1.3}
    assert manifest["defaults"]["guidance"] == DEFAULTS["guidance"]
    assert manifest["components"]["tokenizer"]["maxLength"] == config.MAX_LENGTH
    for comp in manifest["components"].values():
        assert (folder / comp["file"]).is_file() and len(comp["sha256"]) == 64
    assert not (root / "shapes-base.tmp").exists()
    # torch and onnxruntime on this machine, each graph within the pack contract's per-graph
    # budget and the 10-step DDIM within its own (see test_committed_pack_... for the arithmetic).
    from shapes.export import DDIM_TOLERANCE, GRAPH_TOLERANCE
    assert set(result["parity"]) == {"text_encoder", "unet", "vae_encoder", "vae_decoder", "ddim"}
    for name, err in result["parity"].items():
        assert err <= (DDIM_TOLERANCE if name == "ddim" else GRAPH_TOLERANCE), name


def test_onnx_io_names_follow_the_diffusers_exports(exported):
    import onnx

    folder = exported[0] / "shapes-base"
    names = {f: ([i.name for i in g.graph.input], [o.name for o in g.graph.output])
             for f in ("text_encoder", "unet", "vae_encoder", "vae_decoder")
             for g in [onnx.load(str(folder / f"{f}.onnx"))]}
    assert names["text_encoder"] == (["input_ids"], ["last_hidden_state"])
    assert names["unet"] == (["sample", "timestep", "encoder_hidden_states"], ["out_sample"])
    assert names["vae_encoder"] == (["sample"], ["latent_sample"])
    assert names["vae_decoder"] == (["latent_sample"], ["sample"])


def test_parity_file_holds_every_vector_with_metadata(exported):
    root, _ = exported
    tensors, meta = read_vectors(root / "parity.safetensors")
    assert meta["format"] == "retrace-parity/1" and meta["ddim.prompt"] == PARITY_PROMPT
    assert meta["ddim.steps"] == "10" and float(meta["ddim.guidance"]) == DEFAULTS["guidance"]
    assert tensors["text_encoder.input_ids"].dtype == np.int32
    assert tensors["text_encoder.input_ids"].shape == (2, config.MAX_LENGTH)
    assert tensors["unet.timestep"].dtype == np.int64
    assert tensors["ddim.expected_latent"].dtype == np.float64
    assert tensors["ddim.expected_latent"].shape == tensors["ddim.noise"].shape == (1, 4, 16, 16)
    # the vae encoder output is the unscaled posterior mean, the decoder input the same latent
    np.testing.assert_array_equal(tensors["vae_encoder.latent_sample"], tensors["vae_decoder.latent_sample"])


def test_parity_check_catches_a_graph_that_differs_from_torch(tmp_path):
    m = tiny_model(seed=2)
    inputs = _parity_inputs(m)
    export_networks(m, tmp_path, inputs)
    with torch.no_grad():
        m.unet.conv_out.bias.add_(0.01)  # torch now disagrees with the exported unet.onnx
    with pytest.raises(AssertionError, match="unet torch/onnxruntime"):
        parity_vectors(m, tmp_path, inputs, "shapes-base", 5.0)


COMMITTED = [p for p in ("shapes-base", "shapes-b2", "shapes-ddpo")
             if (config.PACKS / p / "pack.json").is_file()]


@pytest.mark.parametrize("pack_id", COMMITTED)
def test_committed_pack_matches_its_parity_vectors_in_onnxruntime(pack_id):
    from common.onnx_io import ort_session
    from common.packs import sha256_file
    from shapes.export import DDIM_TOLERANCE, GRAPH_TOLERANCE, _ort_ddim
    from shapes.model import scaled_linear_alphas_cumprod

    folder = config.PACKS / pack_id
    manifest = json.loads((folder / "pack.json").read_text())
    for comp in manifest["components"].values():
        assert sha256_file(folder / comp["file"]) == comp["sha256"], comp["file"]
    t, meta = read_vectors(config.PARITY / f"{pack_id}.safetensors")
    assert meta["pack"] == pack_id
    s = {n: ort_session(folder / f"{n}.onnx") for n in ("text_encoder", "unet", "vae_encoder", "vae_decoder")}
    runs = {
        "text_encoder.last_hidden_state": s["text_encoder"].run(None, {"input_ids": t["text_encoder.input_ids"]}),
        "unet.out_sample": s["unet"].run(None, {"sample": t["unet.sample"], "timestep": t["unet.timestep"],
                                                "encoder_hidden_states": t["unet.encoder_hidden_states"]}),
        "vae_encoder.latent_sample": s["vae_encoder"].run(None, {"sample": t["vae_encoder.sample"]}),
        "vae_decoder.sample": s["vae_decoder"].run(None, {"latent_sample": t["vae_decoder.latent_sample"]}),
    }
    # The pack contract's budgets, not values read off a run: onnxruntime here and torch at export
    # time (maybe another CPU) are two float32 evaluations of ~30 layers of <= 9*192-term sums,
    # ~sqrt(30)*sqrt(1728)*2^-24 = 1.4e-5 relative: 6e-5 at |out| <= 4.7 against 1e-4 (measured
    # <= 5.2e-6). The 10 DDIM steps (float64 state) add up 10 such errors of the guided eps, which
    # guidance 5 scales by up to 1 + 2*5: ~sqrt(10)*11*1.4e-5 = 5e-4 at unit scale against 1e-3
    # (measured <= 2.4e-5).
    for name, out in runs.items():
        assert np.abs(out[0] - t[name]).max() <= GRAPH_TOLERANCE, name
    abar = scaled_linear_alphas_cumprod(manifest["schedule"]).numpy()
    z = _ort_ddim(s, t["text_encoder.input_ids"], t["ddim.noise"], abar, int(meta["ddim.steps"]),
                  float(meta["ddim.guidance"]))
    assert np.abs(z - t["ddim.expected_latent"]).max() <= DDIM_TOLERANCE
