"""Backends: the same operations over the set-associative arrays, on CPU (Numba) and GPU (CuPy)."""
