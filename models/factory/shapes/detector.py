"""The analytic reward of the Shapes world: does an image show what its prompt says?

Colour segmentation (each pixel goes to the nearest palette colour if it is saturated and close
enough; the low-saturation background never is), connected components per colour, shape by the
component's fill ratio of its bounding box (square ≈ 1, circle ≈ π/4, triangle ≈ 1/2), and the
relation by mask centroids, at least `RELATION_MARGIN` px apart on its axis. A prompt holds when the
image has exactly the objects it names (no extra ones) in the named relation: 1, else 0.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from .world import COLOURS, SIZE, parse_prompt, relation_holds

# A pixel is an object pixel if its chroma (max − min channel) is at least this and it lies within
# MAX_DISTANCE of a palette colour; the background's chroma stays below ~30.
MIN_CHROMA = 60
MAX_DISTANCE = 90.0
# Components smaller than this are specks (blur, noise), not objects; the smallest true object,
# a 14-px triangle, has ~100 px.
MIN_AREA = 30
# Fill-ratio boundaries: midway between triangle (0.5) and circle (0.785), circle and square (1).
TRIANGLE_BELOW = 0.64
SQUARE_ABOVE = 0.90
# Boxes much longer than wide are no circle/square/triangle.
MAX_ASPECT = 1.6

_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[c] for c in _NAMES], dtype=np.float32)


@dataclass
class Found:
    """One detected object."""
    colour: str
    shape: str
    x: float  # mask centroid, px from the left edge
    y: float  # mask centroid, px from the top edge
    width: int
    height: int
    area: int
    fill: float


def colour_labels(image: np.ndarray) -> np.ndarray:
    """Palette index per pixel of a uint8 [64,64,3] image, −1 for background."""
    px = image.astype(np.float32)
    dist = np.linalg.norm(px[..., None, :] - _PALETTE, axis=-1)
    nearest = dist.argmin(-1)
    chroma = px.max(-1) - px.min(-1)
    ok = (chroma >= MIN_CHROMA) & (dist.min(-1) <= MAX_DISTANCE)
    return np.where(ok, nearest, -1)


def _shape_of(fill: float, width: int, height: int) -> str:
    if max(width, height) > MAX_ASPECT * min(width, height):
        return "other"
    if fill >= SQUARE_ABOVE:
        return "square"
    if fill < TRIANGLE_BELOW:
        return "triangle"
    return "circle"


def detect(image: np.ndarray) -> list[Found]:
    """Objects in one uint8 [64,64,3] image, in scan order of their components."""
    if image.shape != (SIZE, SIZE, 3):
        raise ValueError(f"detect: expected a [{SIZE},{SIZE},3] image, got {list(image.shape)}")
    labels = colour_labels(image)
    found = []
    for k, name in enumerate(_NAMES):
        comps, n = ndimage.label(labels == k)
        for sl, idx in zip(ndimage.find_objects(comps), range(1, n + 1)):
            mask = comps[sl] == idx
            area = int(mask.sum())
            if area < MIN_AREA:
                continue
            height, width = mask.shape
            ys, xs = np.nonzero(mask)
            fill = area / (width * height)
            found.append(Found(name, _shape_of(fill, width, height),
                               float(sl[1].start + xs.mean() + 0.5),
                               float(sl[0].start + ys.mean() + 0.5),
                               width, height, area, float(fill)))
    return found


def prompt_holds(prompt: str, found: list[Found]) -> bool:
    """Whether the detected objects are exactly the prompt's, in its relation."""
    scene = parse_prompt(prompt)
    if len(found) != len(scene.objects):
        return False
    for order in itertools.permutations(found):
        if all((f.colour, f.shape) == o for f, o in zip(order, scene.objects)):
            if scene.relation is None:
                return True
            a, b = order
            if relation_holds(scene.relation, (a.x, a.y), (b.x, b.y)):
                return True
    return False


def _as_batch(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1:] != (SIZE, SIZE, 3) or images.dtype != np.uint8:
        raise ValueError(f"score: images must be uint8 [N,{SIZE},{SIZE},3], "
                         f"got {images.dtype} {list(images.shape)}")
    return images


def score(images: np.ndarray, prompts: list[str]) -> np.ndarray:
    """1.0 where image i satisfies prompts[i], else 0.0: float64 [N]."""
    images = _as_batch(images)
    if len(prompts) != len(images):
        raise ValueError(f"score: {len(images)} images but {len(prompts)} prompts")
    return np.array([float(prompt_holds(p, detect(img))) for img, p in zip(images, prompts)])


def describe(image: np.ndarray) -> list[dict]:
    """The detected objects of one image as JSON-ready dicts."""
    return [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(f).items()}
            for f in detect(image)]
