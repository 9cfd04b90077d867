"""The `peers` benchmark: the vibewatch job written on Quix Streams, Faust and Bytewax.

``job`` is the per-engine logic every peer runs (the project's NumPy kernel and
``EngineScoring``, one engine and one reading at a time, as a per-message state API makes a
user write it); ``quix_app``, ``faust_app`` and ``bytewax_app`` wrap it in each framework and
run in their own virtualenvs (``venv``); ``runner`` and ``scenario`` drive and time them from
the project's own virtualenv, beside the service itself. See docs/benchmarks.md.
"""
