"""The traces room: the trace file format, importers for real annotation formats, a synthetic long-tail
trace generator and trace statistics. See ``traces/FORMAT.md``.

Public API: :mod:`traces.format` (``LabelTrace``, ``RecordedTrace``, ``read_trace``, ``write_trace``...),
:func:`traces.importers.import_trace`, :func:`traces.synth.synthesize`, :func:`traces.stats.compute_stats`.
Nothing heavy is imported here, so that the command line starts fast.
"""
