"""Verification: is the rewritten model equal to the original, on the runtime that judges it?

* :mod:`.inputs`: input specs, user-given or trial shapes for symbolic dims, feeds, ``.npz``.
* :mod:`.compare`: per-output error statistics against tolerances, the PASSED/FAILED table.
* :mod:`.options`: :class:`~.options.VerifyOptions`, how two models are compared.
* :mod:`.trials`: the input shapes and data of each trial, the inputs two models both accept.
* :mod:`.running`: loading and running the models per trial, the tolerances per runtime.
* :mod:`.results`: what verification found (trials, culprits, localisation), as text and JSON.
* :mod:`.verification`: :func:`~.verification.verify_models` (``convert``) and
  :func:`~.verification.validate_models` (``validate``).
* :mod:`.localise`: the first diverging tensor or rewritten node, through shared tensor names.
* :mod:`.repro`: the models ``validate`` reads, the files that reproduce a failure.
"""
