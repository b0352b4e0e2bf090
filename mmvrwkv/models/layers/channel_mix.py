"""Channel mixer of Vision-RWKV (the FFN replacement)."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .init_modes import check_init_mode, fancy_token_mix
from .recompute import module_parameters, recompute_linear, use_recompute
from .shift import TokenShift


class ChannelMix(TokenShift):
    """Channel mixer: token shift, squared-ReLU MLP gated by the receptance.

    ``out = sigmoid(receptance(xr)) * value([key_norm](relu(key(xk))^2))`` with
    ``xk, xr`` the token-shift-mixed inputs. All Linear layers are bias-free.

    Args:
        embed_dims: channels C.
        depth: number of blocks of the backbone (for the 'fancy' init).
        layer_id: index of this block (for the 'fancy' init).
        shift_mode: key of :data:`~mmvrwkv.models.layers.shift.SHIFT_FUNCS`.
        channel_gamma: fraction of the channels per Q-Shift direction (<= 1/4).
        shift_pixel: shift distance; 0 disables the token shift.
        hidden_rate: hidden width = ``int(hidden_rate * C)``.
        init_mode: 'fancy' | 'local' | 'global' initialisation of the mix parameters.
        key_norm: LayerNorm over the hidden channels after the squared ReLU (stabilises large
            models).
        num_heads: heads of the 'q_shift_multihead' shift (VRWKV6); must divide embed_dims.

    In eager training the forward keeps only what the backward needs
    (:meth:`_forward_recompute`; ``recompute = False`` turns that off, e.g. to compare).
    """

    recompute: bool = True

    def __init__(self, embed_dims: int, depth: int, layer_id: int, shift_mode: str = 'q_shift',
                 channel_gamma: float = 0.25, shift_pixel: int = 1, hidden_rate: float = 4,
                 init_mode: str = 'fancy', key_norm: bool = False, num_heads: int = 1) -> None:
        super().__init__(embed_dims, ('k', 'r'), shift_mode, shift_pixel, channel_gamma,
                         num_heads=num_heads)
        if not isinstance(hidden_rate, (int, float)) or isinstance(hidden_rate, bool) \
                or int(hidden_rate * embed_dims) < 1:
            raise ValueError(f'hidden_rate must be a positive number giving at least one hidden '
                             f'channel, got {hidden_rate!r}')
        self.embed_dims = embed_dims
        self.depth = depth
        self.layer_id = layer_id
        self.init_mode = check_init_mode(init_mode)

        C = embed_dims
        hidden = int(hidden_rate * C)
        self.hidden_dims = hidden
        self.key = nn.Linear(C, hidden, bias=False)
        self.key_norm = nn.LayerNorm(hidden) if key_norm else None
        self.receptance = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(hidden, C, bias=False)
        self.reset_mix_parameters()

    @torch.no_grad()
    def reset_mix_parameters(self) -> None:
        """(Re)initialise the mix coefficients: 'fancy' ``x^r10`` for both (x = h / C),
        'local' 1 (no shift), 'global' 0.5."""
        if self.init_mode == 'fancy':
            mu = fancy_token_mix(self.embed_dims, self.layer_id, self.depth)['k']
            self.spatial_mix_k.copy_(mu)
            self.spatial_mix_r.copy_(mu)
        else:
            value = 1.0 if self.init_mode == 'local' else 0.5
            self.spatial_mix_k.fill_(value)
            self.spatial_mix_r.fill_(value)

    def forward(self, x: torch.Tensor, patch_resolution: Sequence[int],
                norm: Optional[nn.Module] = None) -> torch.Tensor:
        """Mix channels of tokens ``x [B, T, C]`` on the grid ``patch_resolution = (H, W)``.

        ``norm``: normalise ``x`` first (pre-norm blocks); inside the mixer the normalised
        tokens need not be kept (training) or can be freed early (inference).
        """
        if self.recompute and use_recompute(x, self.key.weight):
            return self._forward_recompute(x, patch_resolution, norm)
        xk, xr = self.mix(x if norm is None else norm(x), patch_resolution)
        if torch.is_grad_enabled():
            return torch.sigmoid(self.receptance(xr)) * self.value(self._activation(self.key(xk))[0])
        # No autograd: overwrite the intermediates instead of allocating new ones, and drop
        # each as soon as it is used (the peak is the hidden activation, 4 C per token).
        h = torch.relu_(self.key(xk)).square_()
        r = self.receptance(xr)
        del xk, xr
        if self.key_norm is not None:
            h = self.key_norm(h)
        return torch.sigmoid_(r).mul_(self.value(h))

    def _activation(self, k: torch.Tensor) -> Tuple[torch.Tensor]:
        h = torch.square(torch.relu(k))
        return (h if self.key_norm is None else self.key_norm(h), )

    def _forward_recompute(self, x: torch.Tensor, patch_resolution: Sequence[int],
                           norm: Optional[nn.Module]) -> torch.Tensor:
        """The training forward that keeps only x, the key projection and the two gate inputs
        for the backward (the norm, the mixed inputs and the squared ReLU are recomputed, see
        :mod:`~mmvrwkv.models.layers.recompute`). Same function as :meth:`forward`."""
        k, r = recompute_linear(
            lambda t: self.mix(t if norm is None else norm(t), patch_resolution), (x, ),
            (self.key.weight, self.receptance.weight),
            params=self.mix_parameters() + module_parameters(norm))
        v = recompute_linear(self._activation, (k, ), (self.value.weight, ),
                             params=module_parameters(self.key_norm))[0]
        return torch.sigmoid(r) * v

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, hidden_dims={self.hidden_dims}, '
                f'layer_id={self.layer_id}, shift_mode={self.shift_mode!r}, '
                f'shift_pixel={self.shift_pixel}, init_mode={self.init_mode!r}')
