"""Each row's k highest scores, ties to the lower column, whatever k and whatever else the batch holds.

`torch.topk` leaves the order of equal values to its algorithm, which changes with k: two labels whose
probabilities round to the same float32 came back in one order from a top 100 and in the other from a top
10, so the service and the batch job ranked a client differently (1 of 6,468 at the `lpoint` scale).
"""

from __future__ import annotations

import torch


def stable_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """int64 [B, min(k, N)]: the columns of each row's k highest float32 `scores` [B, N], best first, ties to
    the lower column (a stable descending sort's first k), from one topk over int64 keys that put the
    score's order above the column's: no sort of the whole row."""
    bits = (scores.float() + 0.0).contiguous().view(torch.int32).long()  # + 0.0: -0.0 ties with 0.0
    ordered = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)  # the integers in the floats' order
    column = torch.arange(scores.shape[1] - 1, -1, -1, device=scores.device)  # a lower column, a higher key
    return ((ordered << 32) | column).topk(min(k, scores.shape[1]), dim=1).indices
