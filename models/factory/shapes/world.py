"""The Shapes world: prompts, the scenes that satisfy them, and the fixed train/held-out split.

Everything here is a pure function of its random generator, so datasets, RL prompts and
evaluation sets are reproducible from a seed. The rules (issue 4): 64×64 scenes on a smooth,
low-saturation gradient; one or two flat-coloured objects (circle, square, triangle; 14–24 px
boxes, inside the canvas, not overlapping); a two-object relation holds between the objects'
mask centroids on its axis by at least `RELATION_MARGIN` px.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

SIZE = 64
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 40),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
COLOUR_JITTER = 15
MIN_BOX, MAX_BOX = 14, 24
RELATION_MARGIN = 8.0
# Empty pixels kept between two objects' boxes, so their masks never touch.
GAP = 2
HELDOUT_FRACTION = 0.2
_HELDOUT_SEED = 20240404

Obj = tuple[str, str]  # (colour, shape)


@dataclass(frozen=True)
class Scene:
    """What a prompt asks for: one or two objects and, for two, how the first relates to the second."""
    objects: tuple[Obj, ...]
    relation: str | None = None

    @property
    def prompt(self) -> str:
        first = f"a {self.objects[0][0]} {self.objects[0][1]}"
        if self.relation is None:
            return first
        return f"{first} {self.relation} a {self.objects[1][0]} {self.objects[1][1]}"


_OBJ = r"an? (\w+) (\w+)"
_PROMPT = re.compile(rf"^{_OBJ}(?: (left of|right of|above|below) {_OBJ})?$")


def parse_prompt(prompt: str) -> Scene:
    """Parse `a {colour} {shape}` or `a {colour} {shape} {relation} a {colour} {shape}`."""
    text = " ".join(str(prompt).lower().split())
    m = _PROMPT.match(text)
    if not m:
        raise ValueError(f"prompt {prompt!r} is not 'a <colour> <shape>' "
                         f"[<left of|right of|above|below> a <colour> <shape>]")
    c1, s1, rel, c2, s2 = m.groups()
    objects = [(c1, s1)] + ([(c2, s2)] if rel else [])
    for colour, shape in objects:
        if colour not in COLOURS:
            raise ValueError(f"prompt {prompt!r}: unknown colour {colour!r} "
                             f"(one of {', '.join(COLOURS)})")
        if shape not in SHAPES:
            raise ValueError(f"prompt {prompt!r}: unknown shape {shape!r} "
                             f"(one of {', '.join(SHAPES)})")
    return Scene(tuple(objects), rel)


# ---------------------------------------------------------------- the fixed held-out split

def _all_objects() -> list[Obj]:
    return [(c, s) for c in COLOURS for s in SHAPES]


def _heldout_combos() -> frozenset[tuple[str, str, str, str]]:
    """20 % of the ordered (colour, shape, colour, shape) pairs, closed under swapping.

    "A left of B" shows the same scenes as "B right of A", so a combo is held out together with
    its swap; otherwise the held-out scenes would be trained on under the mirrored prompt.
    """
    objs = _all_objects()
    pairs = [(a, b) for i, a in enumerate(objs) for b in objs[i:]]
    order = np.random.default_rng(_HELDOUT_SEED).permutation(len(pairs))
    target = round(HELDOUT_FRACTION * len(objs) ** 2)
    chosen: set[tuple[str, str, str, str]] = set()
    for i in order:
        a, b = pairs[i]
        combos = {a + b, b + a}
        if len(chosen) + len(combos) <= target:
            chosen |= combos
        if len(chosen) == target:
            break
    return frozenset(chosen)


HELDOUT_COMBOS: frozenset[tuple[str, str, str, str]] = _heldout_combos()


def is_heldout(scene: Scene | str) -> bool:
    """True for a two-object prompt whose (colour, shape, colour, shape) combo is held out."""
    if isinstance(scene, str):
        scene = parse_prompt(scene)
    return len(scene.objects) == 2 and scene.objects[0] + scene.objects[1] in HELDOUT_COMBOS


def _check_split(split: str) -> None:
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")


def all_prompts(split: str = "train") -> list[str]:
    """Every prompt of a split, in a fixed order: 'train' has the 12 one-object prompts and the
    seen two-object combos in all four relations; 'heldout' only the held-out combos."""
    _check_split(split)
    objs = _all_objects()
    out = [Scene((o,)).prompt for o in objs] if split == "train" else []
    for a, b in itertools.product(objs, objs):
        if (a + b in HELDOUT_COMBOS) == (split == "heldout"):
            out.extend(Scene((a, b), rel).prompt for rel in RELATIONS)
    return out


def random_prompt(rng: np.random.Generator, split: str = "train", two_prob: float = 0.75) -> str:
    """A random prompt of the split: two objects with probability `two_prob` (always two for
    'heldout', which has no one-object prompts), combos and relations uniform."""
    _check_split(split)
    objs = _all_objects()
    if split == "train" and rng.random() >= two_prob:
        return Scene((objs[rng.integers(len(objs))],)).prompt
    while True:
        a, b = objs[rng.integers(len(objs))], objs[rng.integers(len(objs))]
        if (a + b in HELDOUT_COMBOS) == (split == "heldout"):
            return Scene((a, b), RELATIONS[rng.integers(len(RELATIONS))]).prompt


# ---------------------------------------------------------------- rendering

def shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean [size, size] mask of a shape filling its box (pixel centres inside the shape).

    Fill ratios differ enough for the detector: square 1, circle ≈ π/4, triangle ≈ 1/2.
    """
    c = (np.arange(size) + 0.5)
    y, x = np.meshgrid(c, c, indexing="ij")
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    if shape == "circle":
        r = size / 2
        return (x - r) ** 2 + (y - r) ** 2 <= r * r
    if shape == "triangle":
        # Apex up at the top centre, base along the bottom edge.
        half_width = (y / size) * (size / 2)
        return np.abs(x - size / 2) <= half_width
    raise ValueError(f"unknown shape {shape!r}")


def _background(rng: np.random.Generator) -> np.ndarray:
    """A smooth two-colour gradient, low saturation, luminance ~140–235, with light noise."""
    ends = []
    for _ in range(2):
        lum = rng.uniform(155, 220)
        tint = rng.normal(0, 1, 3)
        tint -= tint.mean()
        tint *= rng.uniform(0, 14) / (np.abs(tint).max() + 1e-9)
        ends.append(lum + tint)
    theta = rng.uniform(0, 2 * np.pi)
    c = np.arange(SIZE) / (SIZE - 1) - 0.5
    y, x = np.meshgrid(c, c, indexing="ij")
    t = np.clip((x * np.cos(theta) + y * np.sin(theta)) / 0.71 * 0.5 + 0.5, 0, 1)[..., None]
    img = (1 - t) * ends[0] + t * ends[1] + rng.normal(0, 2.5, (SIZE, SIZE, 3))
    return np.clip(img, 0, 255)


def _centroid(mask: np.ndarray, top: int, left: int) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return left + xs.mean() + 0.5, top + ys.mean() + 0.5


def relation_holds(relation: str, a: tuple[float, float], b: tuple[float, float],
                   margin: float = RELATION_MARGIN) -> bool:
    """Whether centre `a` (x, y) is `relation` centre `b` by at least `margin` px (y grows down)."""
    if relation == "left of":
        return b[0] - a[0] >= margin
    if relation == "right of":
        return a[0] - b[0] >= margin
    if relation == "above":
        return b[1] - a[1] >= margin
    if relation == "below":
        return a[1] - b[1] >= margin
    raise ValueError(f"unknown relation {relation!r}")


def _place(rng: np.random.Generator, scene: Scene) -> list[tuple[int, int, int, np.ndarray]]:
    """(top, left, size, mask) per object, drawn until the scene's constraints hold."""
    for _ in range(10_000):
        placed = []
        for _, shape in scene.objects:
            size = int(rng.integers(MIN_BOX, MAX_BOX + 1))
            top, left = (int(v) for v in rng.integers(0, SIZE - size + 1, 2))
            placed.append((top, left, size, shape_mask(shape, size)))
        if len(placed) == 1:
            return placed
        (t1, l1, s1, m1), (t2, l2, s2, m2) = placed
        apart = (l1 + s1 + GAP <= l2 or l2 + s2 + GAP <= l1
                 or t1 + s1 + GAP <= t2 or t2 + s2 + GAP <= t1)
        if apart and relation_holds(scene.relation or "", _centroid(m1, t1, l1),
                                    _centroid(m2, t2, l2)):
            return placed
    raise RuntimeError(f"could not place {scene.prompt!r}")  # never happens with these sizes


def render_scene(rng: np.random.Generator, prompt: str) -> np.ndarray:
    """A uint8 [64, 64, 3] scene that satisfies `prompt`; positions, sizes, colour jitter and
    background are drawn from `rng`."""
    scene = parse_prompt(prompt)
    img = _background(rng)
    for (colour, _), (top, left, size, mask) in zip(scene.objects, _place(rng, scene)):
        rgb = np.array(COLOURS[colour], dtype=float)
        rgb = rgb + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3)
        img[top:top + size, left:left + size][mask] = rgb
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_dataset(n: int, seed: int, split: str = "train",
                 two_prob: float = 0.75) -> tuple[np.ndarray, list[str]]:
    """`n` random prompts of `split` and one rendered scene each: (uint8 [N,64,64,3], prompts)."""
    rng = np.random.default_rng(seed)
    prompts = [random_prompt(rng, split, two_prob) for _ in range(n)]
    images = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    for i, p in enumerate(prompts):
        images[i] = render_scene(rng, p)
    return images, prompts
