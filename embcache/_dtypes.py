"""Row dtypes: what a name means, and the same-width unsigned type that kernels copy bits with."""
from __future__ import annotations

import numpy as np

from .errors import ConfigError, MissingDependencyError

__all__ = ["ROW_DTYPES", "row_dtype", "raw"]

ROW_DTYPES = ("float32", "float16", "bfloat16")
_RAW = {4: np.uint32, 2: np.uint16}


def row_dtype(name: str | np.dtype | type) -> np.dtype:
    """The NumPy dtype of rows named ``name`` (``"float32"``, ``"float16"`` or ``"bfloat16"``)."""
    text = np.dtype(name).name if not isinstance(name, str) else name
    if text == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            from ._extras import install_hint

            raise MissingDependencyError(
                f"bfloat16 rows need the ml_dtypes package: pip install ml_dtypes (or {install_hint('cuda')})"
            ) from None
        return np.dtype(ml_dtypes.bfloat16)
    if text not in ROW_DTYPES:
        raise ConfigError(f"dtype {name!r} is not a row dtype; choose one of {', '.join(ROW_DTYPES)}")
    return np.dtype(text)


def raw(array: np.ndarray) -> np.ndarray:
    """View of float rows as unsigned integers of the same width, so kernels copy bits exactly."""
    return array.view(_RAW[array.dtype.itemsize])
