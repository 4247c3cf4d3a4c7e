"""Model files: loading (with external data), checking, staged and atomic saving.

:mod:`.model_io` never leaves a partial or clobbered file: the output is written beside the target
and renamed into place only once complete; the input model is never modified.
"""
