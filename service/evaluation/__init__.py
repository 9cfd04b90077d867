"""Offline evaluation of the scoring: NAB, labelled CSVs, run-to-failure lead time.

Modules here never import TensorFlow at import time.
"""
