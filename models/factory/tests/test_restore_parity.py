"""The committed packs against their parity vectors (test/fixtures/parity/restore-*.safetensors).

`unet.out_sample` was computed by torch at export time, so comparing it with onnxruntime on the
committed unet.onnx is the torch <-> ORT check; `expected` is the factory's 5-step sampler output
that the engine's Vitest test (test/integration/restore-parity.test.ts) must also reproduce.
"""
import json

import numpy as np
import pytest

from common.onnx_io import ort_session
from common.packs import sha256_file
from common.vectors import read_vectors
from restore import config
from restore.export import onnx_net
from restore.schedule import sample, truncated_schedule

TASKS = sorted(config.TASKS)


@pytest.fixture(scope="module", params=TASKS)
def pack(request):
    task = config.TASKS[request.param]
    folder = config.pack_dir(task)
    tensors, meta = read_vectors(config.vectors_path(task))
    return task, folder, tensors, meta, ort_session(folder / "unet.onnx")


def test_vectors_have_the_documented_layout(pack):
    task, _, t, meta, _ = pack
    assert meta["format"] == "retrace-parity/1" and meta["pack"] == task.pack_id
    assert t["degraded"].shape == (1, 3, 32, 32) and t["degraded"].dtype == np.float32
    assert t["noise"].shape == (5, 1, 3, 32, 32) and t["noise"].dtype == np.float32
    assert t["expected"].shape == (1, 3, 32, 32) and np.abs(t["expected"]).max() <= 1
    assert t["unet.sample"].shape == (2, 6, 32, 32)
    assert t["unet.timestep"].dtype == np.int64 and t["unet.timestep"].shape == (2,)
    assert t["unet.out_sample"].shape == (2, 3, 32, 32)


def test_onnxruntime_matches_torch_on_the_network_vectors(pack):
    _, _, t, _, session = pack
    out = session.run(None, {"sample": t["unet.sample"], "timestep": t["unet.timestep"]})[0]
    # The pack contract's per-graph budget (as shapes.export.GRAPH_TOLERANCE), not a value read
    # off a run: onnxruntime here and torch at export time (maybe another CPU) are two float32
    # evaluations of 24 convolutions of <= 9*176 = 1584 terms: ~sqrt(24)*sqrt(1584)*2^-24 = 1.2e-5
    # relative, 4.4e-5 at |out| <= 3.8 (measured: 3.3e-6).
    assert np.abs(out - t["unet.out_sample"]).max() <= 1e-4


def test_sampler_reproduces_the_expected_output(pack):
    _, _, t, _, session = pack
    noise = [n.astype(np.float64) for n in t["noise"]]
    out = sample(onnx_net(session), t["degraded"].astype(np.float64), noise, truncated_schedule())
    # The same budget for the float64 sampler around the 5 float32 calls: x0 takes each call's
    # error times beta_t/sqrt(1-ab_t)/sqrt(alpha_t) (<= 0.76) and the later 1/sqrt(alpha) factors
    # (measured: 3e-7, ten times less than one call's error).
    assert np.abs(out - t["expected"]).max() <= 1e-4
    other = sample(onnx_net(session), t["degraded"].astype(np.float64), noise[::-1],
                   truncated_schedule())
    assert np.abs(other - t["expected"]).max() > 1e-2  # the vectors pin the noise, not just the input


def test_pack_manifest_names_the_committed_network(pack):
    task, folder, _, _, _ = pack
    manifest = json.loads((folder / "pack.json").read_text())
    assert manifest["id"] == task.pack_id
    assert manifest["components"]["unet"]["sha256"] == sha256_file(folder / "unet.onnx")
    assert manifest["schedule"] == {"kind": "resfusion_truncated", "betaStart": 0.1 / 12,
                                    "betaEnd": 20 / 12, "trainSteps": 12}
    assert manifest["restoration"]["degradation"] == task.degradation
    assert (folder / manifest["modelCard"]).is_file()


def test_bundled_packs_stay_small():
    sizes = [(config.pack_dir(t) / "unet.onnx").stat().st_size for t in config.TASKS.values()]
    assert max(sizes) <= 16 * 2**20 and sum(sizes) <= 32 * 2**20
