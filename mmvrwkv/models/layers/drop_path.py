"""Stochastic depth (DropPath) without mmcv/timm."""
import torch
import torch.nn as nn


def drop_path(x: torch.Tensor, drop_prob: float = 0., training: bool = False) -> torch.Tensor:
    """Zero whole samples of a residual branch with probability ``drop_prob`` and scale the
    kept ones by ``1 / (1 - drop_prob)`` so that the expectation is unchanged. Identity in
    eval mode or for ``drop_prob == 0``."""
    if drop_prob == 0. or not training:
        return x
    keep_prob = 1. - drop_prob
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    mask = x.new_empty(shape).bernoulli_(keep_prob)
    return x * mask.div_(keep_prob)


class DropPath(nn.Module):
    """Module wrapper of :func:`drop_path` (per-sample stochastic depth).

    Args:
        drop_prob: probability of dropping the branch for a sample, in ``[0, 1)``.
    """

    def __init__(self, drop_prob: float = 0.) -> None:
        super().__init__()
        if not isinstance(drop_prob, (int, float)) or not 0 <= drop_prob < 1:
            raise ValueError(f'drop_prob must be in [0, 1), got {drop_prob!r}')
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'
