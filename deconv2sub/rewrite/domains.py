"""The names of the default ONNX operator domain (one definition for the whole pass)."""

from __future__ import annotations

__all__ = ["DEFAULT_DOMAINS", "is_default_op"]

# A node of the default domain may name it in any of these ways (onnx-graphsurgeon keeps None).
DEFAULT_DOMAINS = (None, "", "ai.onnx")


def is_default_op(node, op: str) -> bool:
    """Whether ``node`` is the default-domain operator ``op``."""
    return node is not None and node.op == op and node.domain in DEFAULT_DOMAINS
