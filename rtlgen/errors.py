"""User-facing errors.

Every problem with the user's model, options or files is raised as an `RtlgenError` whose message is one
line naming the node, op, option or file and what to do. The CLI prints it and exits non-zero; nothing
else in the compiler prints tracebacks at the user.
"""
from __future__ import annotations

from dataclasses import dataclass


class RtlgenError(Exception):
    """A problem the user can fix; `str(err)` is the whole message."""


@dataclass(frozen=True)
class Offence:
    """One node that stops a model from compiling."""

    node: str
    op: str
    why: str

    def __str__(self) -> str:
        return f"{self.node} ({self.op}): {self.why}"


class UnsupportedModelError(RtlgenError):
    """The graph check found nodes rtlgen cannot map; lists every one of them at once."""

    def __init__(self, offences: list[Offence]):
        self.offences = list(offences)
        listing = "; ".join(str(o) for o in self.offences)
        super().__init__(f"unsupported model, {len(self.offences)} problem(s): {listing}")
