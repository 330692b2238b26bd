"""Batch drift tests: a reference window against a current window, per column.

Pure functions of the data (no I/O, no clock). Entry points:

* :func:`check` runs one test per column (size-aware defaults from
  :func:`default_test`, or per-column overrides) and returns frozen
  :class:`TestResult` records;
* :func:`build_profile` summarises a reference into a JSON-serializable
  :class:`ReferenceProfile` that :func:`check` accepts in place of the raw
  reference;
* :class:`PCAReconstruction` is the multivariate check;
* :data:`TESTS` / :func:`build_test` is the registry of tests by config name.
"""

from detectors.batch.base import BINARY, CATEGORICAL, NUMERIC, BatchTest, TestResult
from detectors.batch.check import check
from detectors.batch.defaults import default_test
from detectors.batch.pca_reconstruction import PCAReconstruction
from detectors.batch.profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    build_profile,
    decode_profile,
    encode_profile,
)
from detectors.batch.registry import TESTS, build_test, get_test_class

__all__ = [
    "BINARY",
    "CATEGORICAL",
    "NUMERIC",
    "TESTS",
    "BatchTest",
    "CategoricalProfile",
    "NumericProfile",
    "PCAReconstruction",
    "ReferenceProfile",
    "TestResult",
    "build_profile",
    "build_test",
    "check",
    "decode_profile",
    "default_test",
    "encode_profile",
    "get_test_class",
]
