"""Model files: loading, checking, external data and staged, atomic saving.

Every failure is one :class:`~deconv2sub.errors.InputError` (reading) or
:class:`~deconv2sub.errors.OutputError` (writing) line naming the file; the input model is never
modified, and no partial or clobbered output is ever left. What is where:

=========================  ===================================================================
module                     holds
=========================  ===================================================================
:mod:`.load`               ``load_model`` (clear load errors), ``model_files``, ``model_size_bytes``
:mod:`.check`              ``check_model``, ``checker_complaint`` (the ONNX checker, big models too)
:mod:`.paths`              ``check_output_path`` (the one check; no onnx import), ``same_file``
:mod:`.save`               ``StagedModel``, ``stage_model``, ``save_model``,
                           the external-data size rule, atomic renames, stale temporaries
:mod:`.data_file`          ``prepare``: which tensors go to the data file, aligned, streamed
:mod:`.external_data`      data-file locations and their checks, ``verify_external_data``,
                           ``load_external_data_into``, byte-range streaming
:mod:`.skeleton`           data-less copies of big models (for the checker and shape inference)
:mod:`.tensors`            walking a model's tensors, external-data markers, ``DETACHED_LOCATION``
=========================  ===================================================================

Importing this package imports none of them (``import deconv2sub.io`` stays cheap).
"""
