"""The emissions: each one way of writing a ConvTranspose as Conv + shuffle (+ crop), one per file.

Every emission is exact (taps copied, values moved, never recomputed); they differ in speed and in
which ops a target supports. Each module defines one subclass of
:class:`deconv2sub.rewrite.emissions.base.Emission`: it sets ``name`` and writes ``emit``, and
states only what differs from the base class's defaults (``order``, ``fold_crop``, ``fallback``,
``applies``); :mod:`deconv2sub.rewrite.emissions.registry` maps the names to the objects. A new
emission is one module here plus one entry in the registry.
"""
