"""Versions of Python and of the libraries that shape the scores, recorded with a run and a fitted model."""

from __future__ import annotations

import platform

import numpy as np

from frozenasd import __version__


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape the scores, for the run's record."""
    import onnxruntime
    import scipy
    import sklearn

    return {
        "frozenasd": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
