"""Channel mixer of Vision-RWKV (the FFN replacement)."""
from functools import partial
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .init_modes import check_init_mode, fancy_token_mix
from .mixer import Mixer, receptance_gate
from .recompute import module_parameters


class ChannelMix(Mixer):
    """Channel mixer: token shift, squared-ReLU MLP gated by the receptance.

    ``out = sigmoid(receptance(xr)) * value([key_norm](relu(key(xk))^2))`` with
    ``xk, xr`` the token-shift-mixed inputs. All Linear layers are bias-free.

    Args:
        embed_dims, shift_mode, channel_gamma, shift_pixel: the token shift, see
            :class:`~mmvrwkv.models.layers.shift.TokenShift`.
        depth, layer_id: blocks of the backbone and index of this one (for the 'fancy' init).
        hidden_rate: hidden width = ``int(hidden_rate * C)``.
        init_mode: 'fancy' | 'local' | 'global' initialisation of the mix parameters.
        key_norm: LayerNorm over the hidden channels after the squared ReLU (stabilises large
            models).
        num_heads: heads of the 'q_shift_multihead' shift (VRWKV6); must divide embed_dims.

    Memory: see :class:`~mmvrwkv.models.layers.mixer.Mixer` (in training the backward keeps
    x, the key projection and the two gate inputs; the norm, the mixed inputs and the squared
    ReLU are recomputed; without autograd the peak is the hidden activation, 4 C per token).
    """

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
        """Mix channels of tokens ``x [B, T, C]`` on the grid ``patch_resolution = (H, W)``;
        ``norm`` (a pre-norm block's LayerNorm) is applied to ``x`` first."""
        stages = self.stages(x)
        k, r = self.project_mixed(stages, x, patch_resolution, norm, (self.key, self.receptance))
        v = stages(partial(self._activation, inplace=stages.inplace), (k, ), (self.value, ),
                   params=module_parameters(self.key_norm))[0]
        return receptance_gate(r, v, stages.inplace)

    def _activation(self, k: torch.Tensor, inplace: bool = False) -> Tuple[torch.Tensor]:
        """``([key_norm](relu(k)^2), )``, the input of the value projection. In place it
        stays in ``k``'s buffer (the forward still holds ``k``: a second hidden-size buffer
        alive during the value projection would raise the peak)."""
        h = torch.relu_(k).square_() if inplace else torch.square(torch.relu(k))
        if self.key_norm is not None:
            normed = self.key_norm(h)
            h = h.copy_(normed) if inplace else normed
        return (h, )

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, hidden_dims={self.hidden_dims}, '
                f'layer_id={self.layer_id}, shift_mode={self.shift_mode!r}, '
                f'shift_pixel={self.shift_pixel}, init_mode={self.init_mode!r}')
