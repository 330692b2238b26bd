"""Drift detectors: streaming state machines (river's algorithms behind one contract).

Nothing here does I/O. ``registry.DETECTORS`` lists every detector by name.
"""
