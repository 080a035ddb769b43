"""Toolchain failures we know, matched by the text of the error: what the toolchain gets wrong, its upstream issue
when one is filed, and what pocketvit does about it. `pocketvit export` adds the match and the targets that did
export to a failure's message; the zoo's coverage matrix (pipeline/zoo_coverage.py) puts them in its failure cells.

    from pocketvit.export.known_issues import known_issue, explain
    known_issue("litert", "... 'tfl.mul' op operands don't have broadcast-compatible shapes")  # -> ToolchainIssue

Add an entry when a failure is understood; keep `pattern` specific enough that it names one cause.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ToolchainIssue:
    runtime: str  # executorch | litert | onnx | coreml (every target of that runtime: float, int8, drop-in)
    pattern: str  # regular expression searched in the error text
    toolchain: str
    summary: str  # what goes wrong, in one sentence
    link: str = ""  # the upstream issue, when one is filed
    workaround: str = ""  # what pocketvit does about it ("" = nothing yet: use another target)

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if k != "pattern"}


KNOWN_ISSUES: tuple[ToolchainIssue, ...] = (
    ToolchainIssue(
        "coreml", r"Unsupported fx node:? *'?alias|aten\.alias", "coremltools 9.0",
        "the torch.export frontend has no conversion for aten.alias (GhostNet's channel slice that keeps every "
        "channel becomes one)",
        "https://github.com/apple/coremltools/issues/2517",
        "pocketvit converts such a model through torch.jit.trace instead, or, where it refuses the trace (Swin: the "
        "graph branches on tensor values), through torch.export with the alias nodes dropped (alias-as-identity); "
        "automatic, said once, the export info names the route, the result is spec-checked"),
    ToolchainIssue(
        "litert", r"tfl\.mul'? op operands don't have broadcast-compatible shapes", "litert-torch 0.10",
        "the converter rejects a graph where one multiply broadcasts implicitly and the next through expand_as "
        "(MobileViTv2's linear self-attention); no upstream issue found",
        "",
        "the rewrite linear-attention-broadcast (on by default for litert and litert-int8) writes both multiplies "
        "with implicit broadcasting; --no-rewrite linear-attention-broadcast switches it off"),
    ToolchainIssue(
        "coreml", r"addcmul", "coremltools 9.0",
        "neither frontend converts aten.addcmul (ConvNeXtV2's GlobalResponseNorm, ResMLP's Affine); no upstream "
        "issue found",
        "",
        "the rewrite addcmul-as-mul-add (on by default for Core ML) writes it as a multiply and an add; "
        "--no-rewrite addcmul-as-mul-add switches it off"),
)


def known_issue(target: str, text: str) -> ToolchainIssue | None:
    """The known issue of `target`'s toolchain whose pattern occurs in `text`, or None."""
    runtime = target.split("-", 1)[0]
    for issue in KNOWN_ISSUES:
        if issue.runtime == runtime and re.search(issue.pattern, text):
            return issue
    return None


def explain(target: str, message: str, worked: Iterable[str]) -> str:
    """`message` (an export failure), then the known issue it matches and the targets that did export."""
    lines = [message.rstrip()]
    issue = known_issue(target, message)
    if issue is not None:
        lines.append(f"Known {issue.toolchain} issue: {issue.summary}" + (f" ({issue.link})" if issue.link else "")
                     + (f". Workaround: {issue.workaround}." if issue.workaround else "."))
    worked = [t for t in worked if t != target]
    lines.append(f"Exported for this model instead: {', '.join(worked)}." if worked
                 else "No other target exported for this model either.")
    return "\n".join(lines)


__all__ = ["KNOWN_ISSUES", "ToolchainIssue", "explain", "known_issue"]
