from ._base import Policy

__all__ = ["FIFO"]


class FIFO(Policy):
    """First In, First Out (FIFO): evicts the key admitted in the oldest batch; hits change nothing."""

    name = "fifo"
    new_score = "clock"
    hit_score = "score"
