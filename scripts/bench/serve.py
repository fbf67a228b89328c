"""The bench's way of timing a Python tool against Retrace run for run.

`serve(header, once)` prints `header` as one JSON line (the tool is loaded and warmed up), then
answers each line read from stdin — a seed — with one JSON line: the wall seconds of `once(seed)`
and whatever `once` returned (such as the seconds spent inside onnxruntime's `run`). The bench
alternates one run here with one run of Retrace, so both meet the same load on a shared machine.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Callable


def serve(header: dict, once: Callable[[int], dict | None]) -> int:
    print(json.dumps({**header, "ready": True}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            seed = int(line)
        except ValueError:
            print(json.dumps({"error": f"expected a seed, got {line!r}"}), flush=True)
            continue
        started = time.perf_counter()
        extra = once(seed) or {}
        print(json.dumps({"seconds": time.perf_counter() - started, **extra}), flush=True)
    return 0
