"""Verification: is the rewritten model equal to the original, on the runtime that judges it?

* :mod:`.inputs`: input specs, user-given or trial shapes for symbolic dims, feeds, ``.npz``.
* :mod:`.compare`: per-output error statistics against tolerances, the PASSED/FAILED table.
* :mod:`.verification`: running both models at several trial shapes, verifying, localising the first
  diverging node, repro files.
"""
