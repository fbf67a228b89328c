"""Build test/fixtures/tiny-sd: a tiny, randomly initialised Stable Diffusion in the ONNX layout
users get from optimum's exporter.

No model hub is reachable, so everything is made here: a CLIP byte-level BPE vocabulary learned
from the small word list below, tiny UNet / VAE / CLIP text encoder configs (seeded), the PNDM
scheduler config Stable Diffusion 1.x ships, saved with diffusers' save_pretrained, then exported
with `optimum.exporters.onnx.main_export(task="stable-diffusion")`. The torch weights are not kept.

Run from the repository root:
    models/factory/.venv/bin/python scripts/sd-fixture/make_tiny_sd.py
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import regex  # noqa: E402  (the `regex` module CLIP's own pre-tokenizer uses)

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "test" / "fixtures" / "tiny-sd"
MERGES = 400
SEED = 20240611

# Prompt-like English (plus a few accented words, so multi-byte merges are learned too). Small on
# purpose: a few hundred merges is enough to exercise BPE ranking, word ends and byte fallbacks.
CORPUS = """
a photo of a cat sitting on a wooden table next to a window in the morning light
a portrait of an old man with a grey beard, dramatic lighting, highly detailed
a beautiful landscape with mountains and a lake at sunset, trending on artstation
an astronaut riding a horse on the moon, digital art, sharp focus, 4k
a cozy cabin in the snowy forest at night with warm lights in the windows
the city street after the rain, reflections of neon signs on the wet road
a bowl of fresh fruit on a kitchen counter, still life painting in oil
a watercolor painting of a small village by the sea with boats in the harbor
a close up photograph of a flower covered in morning dew, macro lens
a dog running through a field of tall green grass under a blue sky
two children playing with a red ball in the park on a sunny afternoon
a castle on a hill surrounded by clouds, fantasy concept art, matte painting
an ancient temple in the jungle, overgrown with vines and moss, volumetric light
a bright modern living room with large windows, interior design photography
a cup of coffee and a croissant on a cafe terrace in paris, film photography
a black and white photo of a train station crowded with travellers
a robot reading a book in a library, cinematic, ultra realistic, octane render
a bird flying over the ocean waves at dawn, golden hour, soft colors
the northern lights over a frozen lake, long exposure, stars in the sky
a street market full of colorful spices and fabrics, documentary photography
it's a sunny day and the people don't want to leave the beach
they're walking home, we've seen the river, you'll find the bridge, i'm here
a café serving crème brûlée, a naïve painting of a façade, the señor's piñata
restore this photograph, remove the noise, brighten the shadows, keep the colors natural
a sharp, clean, well exposed picture taken with a professional camera and lens
"""


def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible byte → printable character table (the byte-level alphabet)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def learn_merges(corpus: str, count: int) -> list[tuple[str, str]]:
    """Plain BPE learning on CLIP-style words (last symbol carries `</w>`); ties broken by text."""
    byte_encoder = bytes_to_unicode()
    pattern = regex.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
    words: collections.Counter[tuple[str, ...]] = collections.Counter()
    for token in pattern.findall(corpus.lower()):
        symbols = [byte_encoder[b] for b in token.encode("utf-8")]
        symbols[-1] += "</w>"
        words[tuple(symbols)] += 1

    merges: list[tuple[str, str]] = []
    for _ in range(count):
        pairs: collections.Counter[tuple[str, str]] = collections.Counter()
        for word, freq in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += freq
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged: collections.Counter[tuple[str, ...]] = collections.Counter()
        for word, freq in words.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += freq
        words = merged
    return merges


def write_clip_vocab(folder: Path) -> tuple[Path, Path, int]:
    """vocab.json + merges.txt laid out as OpenAI's CLIP does (bytes, bytes+</w>, merges, specials)."""
    merges = learn_merges(CORPUS, MERGES)
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.json"
    merges_file = folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text(
        "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8"
    )
    return vocab_file, merges_file, len(vocab)


def build_pipeline(folder: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab_file, merges_file, vocab_size = write_clip_vocab(folder / "_bpe")
    tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)

    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    torch.manual_seed(SEED + 1)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    # Four VAE levels, as in Stable Diffusion, so the latent is 1/8 of the image.
    torch.manual_seed(SEED + 2)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    )
    # Stable Diffusion 1.x's scheduler config, as its model folder ships it.
    scheduler = PNDMScheduler.from_config(
        {
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "num_train_timesteps": 1000,
            "set_alpha_to_one": False,
            "skip_prk_steps": True,
            "steps_offset": 1,
            "trained_betas": None,
        }
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder / "pt")


def export_onnx(pt_folder: Path, out: Path) -> None:
    from optimum.exporters.onnx import main_export

    if out.exists():
        shutil.rmtree(out)
    main_export(str(pt_folder), output=str(out), task="stable-diffusion", device="cpu")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    readme = args.out / "README.md"
    kept_readme = readme.read_text(encoding="utf-8") if readme.exists() else None
    with tempfile.TemporaryDirectory(prefix="tiny-sd-") as tmp:
        work = Path(tmp)
        build_pipeline(work)
        export_onnx(work / "pt", args.out)
    if kept_readme is not None:
        readme.write_text(kept_readme, encoding="utf-8")
    print(f"{args.out}: {folder_bytes(args.out) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
