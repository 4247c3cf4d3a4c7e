"""Why a node is left alone: :class:`Refusal`, the one way a node is declined.

Matching (:func:`deconv2sub.rewrite.match.check`), planning (a
:class:`deconv2sub.plan.subpixel.PlanError` from the plan), the chooser
(:mod:`deconv2sub.targets.chooser`) and every emission's ``applies``
(:mod:`deconv2sub.rewrite.emissions`) decline a node by returning one. ``code`` is stable and
machine-readable (tests and ``--json`` read it); ``reason`` is the one line shown to people.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Refusal"]


@dataclass(frozen=True)
class Refusal:
    """A node declined: a readable one-line ``reason`` and a machine-readable ``code``."""

    reason: str
    code: str = "refused"

    def __str__(self) -> str:
        """The readable reason."""
        return self.reason
