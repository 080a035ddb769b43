"""What LiteRT's XNNPACK delegate takes of a .tflite: delegate calls, operators left outside, transposes.

The interpreter keeps every node of the flatbuffer after the default XNNPACK delegate is applied and
adds one DELEGATE node per delegated partition; a partition is convex, so the nodes it replaced are
the producers reached walking back from its outputs without crossing its inputs. Every other node
runs on LiteRT's builtin kernels, between delegate calls (the LiteRT analogue of ExecuTorch's nodes
outside the XNNPACK delegate). The counts read what the runtime really does on this machine's build.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

DELEGATE = "DELEGATE"
DELEGATION_KEYS = ("ops", "delegate_calls", "ops_delegated", "ops_outside", "outside_ops", "transposes")


def delegation(ops: list[dict[str, Any]]) -> dict[str, Any]:
    """{ops, delegate_calls, ops_delegated, ops_outside, outside_ops, transposes} from the interpreter's
    `_get_ops_details()` after allocate_tensors (DELEGATE nodes included)."""
    producer: dict[int, int] = {}
    for d in ops:
        if d["op_name"] != DELEGATE:
            producer.update((int(t), int(d["index"])) for t in d["outputs"])
    by_index = {int(d["index"]): d for d in ops}
    inside: set[int] = set()
    calls = 0
    for d in ops:
        if d["op_name"] != DELEGATE:
            continue
        calls += 1
        stop = {int(t) for t in d["inputs"]}
        stack = [int(t) for t in d["outputs"]]
        while stack:
            t = stack.pop()
            n = producer.get(t)
            if t in stop or n is None or n in inside:
                continue
            inside.add(n)
            stack.extend(int(u) for u in by_index[n]["inputs"] if int(u) >= 0)
    plain = [d for d in ops if d["op_name"] != DELEGATE]
    outside = Counter(d["op_name"] for d in plain if int(d["index"]) not in inside)
    counts = Counter(d["op_name"] for d in plain)
    return {
        "ops": dict(counts.most_common()),
        "delegate_calls": calls,
        "ops_delegated": len(plain) - sum(outside.values()),
        "ops_outside": sum(outside.values()),
        "outside_ops": dict(outside.most_common()),
        "transposes": counts.get("TRANSPOSE", 0),
    }
