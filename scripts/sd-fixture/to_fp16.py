"""Convert a diffusers/optimum ONNX Stable Diffusion folder to float16, as GPU users get it.

Every network's weights, inputs and outputs become float16 (onnxconverter-common's
`convert_float_to_float16` with `keep_io_types=False`), integer inputs (`timestep`, `input_ids`)
keep their types, and the other files (configs, tokenizer, scheduler) are copied. With
`--keep-fp32 vae_decoder,vae_encoder` those networks are copied unchanged: a mixed export.

onnxconverter-common 1.14.0 leaves one stale entry in a graph that samples noise: a
RandomNormalLike node keeps producing float32 (its `dtype` attribute is not converted) while the
value_info says float16, and onnxruntime refuses the graph. The fix below converts such nodes'
`dtype` to float16 too. (1.16.0 wrote graphs onnxruntime refused to load, hence the pin.)

    models/factory/.venv/bin/python scripts/sd-fixture/to_fp16.py SRC DST [--keep-fp32 a,b]
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import onnx
from onnx import TensorProto, helper
from onnxconverter_common import float16

NETWORKS = ("text_encoder", "unet", "vae_encoder", "vae_decoder")
RANDOM_OPS = {"RandomNormalLike", "RandomUniformLike", "RandomNormal", "RandomUniform"}
TWO_GIB = 2**31


def fix_random_nodes(model: onnx.ModelProto) -> int:
    """Make random-sampling nodes emit float16 where the converted graph expects it."""
    fixed = 0
    for node in model.graph.node:
        if node.op_type not in RANDOM_OPS:
            continue
        for attr in node.attribute:
            if attr.name == "dtype" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
                fixed += 1
        if node.op_type.endswith("Like") and not any(a.name == "dtype" for a in node.attribute):
            node.attribute.append(helper.make_attribute("dtype", TensorProto.FLOAT16))
            fixed += 1
    return fixed


def convert_network(src: Path, dst: Path) -> None:
    model = onnx.load(str(src))  # follows external data
    half = float16.convert_float_to_float16(model, keep_io_types=False)
    fixed = fix_random_nodes(half)
    dst.parent.mkdir(parents=True, exist_ok=True)
    large = half.ByteSize() >= TWO_GIB
    onnx.save_model(
        half,
        str(dst),
        save_as_external_data=large,
        all_tensors_to_one_file=True,
        location=dst.name + "_data" if large else None,
    )
    note = f", {fixed} random node(s) fixed" if fixed else ""
    print(f"{dst}: float16{note}")


def convert_folder(src: Path, dst: Path, keep_fp32: set[str]) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir():
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        network = rel.parts[0] if len(rel.parts) > 1 else ""
        if path.suffix == ".onnx" and network in NETWORKS and network not in keep_fp32:
            convert_network(path, target)
        elif path.name.endswith(".onnx_data") and network in NETWORKS and network not in keep_fp32:
            continue  # rewritten by convert_network
        elif path.name != "README.md":
            shutil.copy2(path, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--keep-fp32", default="", help="networks to copy unconverted, comma-separated")
    args = parser.parse_args()
    keep = {n for n in args.keep_fp32.split(",") if n}
    unknown = keep - set(NETWORKS)
    if unknown:
        parser.error(f"--keep-fp32: unknown network(s) {sorted(unknown)}; known: {', '.join(NETWORKS)}")
    convert_folder(args.src, args.dst, keep)


if __name__ == "__main__":
    main()
