"""What every RWKV mixer shares: the token-shift front and the memory strategy of its forward.

A mixer's forward is written once, as linear stages run by :class:`LinearStages` (see
:mod:`~mmvrwkv.models.layers.recompute`) around its core op. The first stage of every mixer
is the same: the projections of :meth:`TokenShift.mix` of the (optionally normalised) tokens,
:meth:`Mixer.project_mixed`. The mixers that follow the strategy: SpatialMix, ChannelMix,
SpatialMix6 and ChannelMix6.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .recompute import LinearStages, Projection, module_parameters
from .shift import TokenShift


class Mixer(TokenShift):
    """:class:`TokenShift` and the memory strategy of the mixer's forward.

    In eager training the forward keeps only what the backward needs (its linear stages
    recompute their cheap inputs); ``recompute = False`` turns that off (e.g. to compare).
    Without autograd each stage's inputs are freed as soon as it has run, and the stage
    functions that set the peak overwrite their inputs in place (``stages.inplace``).
    Subclasses call :meth:`stages` once per forward and pass what it returns to their stages.
    ``key`` is a ``nn.Linear`` of every mixer (its weight tells whether a gradient is wanted).
    """

    recompute: bool = True

    def stages(self, x: torch.Tensor) -> LinearStages:
        """The strategy of the forward of ``x`` (recompute, plain or in-place)."""
        return LinearStages(self.recompute, x, self.key.weight)

    def project_mixed(self, stages: LinearStages, x: torch.Tensor,
                      patch_resolution: Sequence[int], norm: Optional[nn.Module],
                      projections: Sequence[Projection]) -> Tuple[torch.Tensor, ...]:
        """``projections[m](mix(norm(x))[m])`` (no ``norm`` for None), run by ``stages``:
        in training the normalised tokens and the mixed inputs are recomputed, not kept."""
        return stages(lambda t: self.mix(t if norm is None else norm(t), patch_resolution),
                      (x, ), projections, params=self.mix_parameters() + module_parameters(norm))


def receptance_gate(r: torch.Tensor, y: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``sigmoid(r) * y``; with ``inplace`` written into ``r`` (no autograd)."""
    return torch.sigmoid_(r).mul_(y) if inplace else torch.sigmoid(r) * y
