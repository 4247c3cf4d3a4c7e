"""The emissions: each one way of writing a ConvTranspose as Conv + shuffle (+ crop), one per file.

Every emission is exact (taps copied, values moved, never recomputed); they differ in speed and in
which ops a target supports. Each module defines one object following the protocol of
:class:`deconv2sub.rewrite.emissions.base.Emission` (``name``, ``fallback``, ``choice``,
``applies``, ``emit``); :mod:`deconv2sub.rewrite.emissions.registry` maps the names to them.
A new emission is one module here plus one entry in the registry.
"""
