"""Building blocks of the VRWKV adapter for dense prediction.

* :class:`SpatialPriorModule` - a small conv stem giving feature maps at strides 4/8/16/32,
  projected to the backbone width C.
* :class:`MSDeformAttn` - multi-scale deformable attention with a value down-projection
  ratio (``value_proj: C -> C*ratio``, ``output_proj: C*ratio -> C``).
* :class:`Injector` (multi-scale features -> RWKV tokens) and :class:`Extractor` (RWKV tokens
  -> multi-scale features, followed by a :class:`ConvFFN`), grouped per interaction in
  :class:`InteractionBlock`.
* :func:`deform_inputs` - reference points and level shapes of both attentions for an input.

Only torch is needed to import this module. The deformable sampling is the op
:func:`mmvrwkv.ops.ms_deform_attn` (mmcv's kernel on CUDA, a dense matrix product for small
maps on the CPU, ``grid_sample`` otherwise or without mmcv).
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

from mmvrwkv.ops.ms_deform_attn import DENSE_MAX_ELEMENTS, ms_deform_attn
from .drop_path import DropPath
from .norm import build_norm2d

Shape2d = Tuple[int, int]
#: ``(reference_points [1, Q, 1, 2], spatial_shapes [L, 2] long, level_start_index [L] long,
#: value shapes as python ints)`` - everything one deformable attention call needs besides the
#: query and value tensors.
DeformInputs = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List[Shape2d]]

class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention (Deformable DETR) with a value width ratio.

    Each query predicts, per head, level and point, a sampling offset (relative to its
    reference point, in units of the level's pixels) and an attention weight (softmax over
    levels x points); the values, projected to ``int(C*ratio)`` channels, are sampled
    bilinearly and combined, then projected back to C.

    Args:
        embed_dims: query/value channels C.
        n_levels: number of value levels.
        n_heads: attention heads (``int(C*ratio)`` must be divisible by it).
        n_points: sampling points per head and level.
        ratio: value down-projection ratio (``value_proj: C -> C*ratio``).
        im2col_step: mmcv CUDA kernel batch step (reduced to a divisor of the batch).
        backend, dense_max_elements: of :func:`mmvrwkv.ops.ms_deform_attn`.
    """

    def __init__(self, embed_dims: int = 256, n_levels: int = 4, n_heads: int = 8,
                 n_points: int = 4, ratio: float = 1.0, im2col_step: int = 64,
                 backend: str = 'auto', dense_max_elements: int = DENSE_MAX_ELEMENTS) -> None:
        super().__init__()
        value_dims = int(embed_dims * ratio)
        if value_dims < 1 or value_dims % n_heads:
            raise ValueError(f'embed_dims*ratio = {embed_dims}*{ratio} = {value_dims} must be '
                             f'a positive multiple of n_heads={n_heads}')
        self.embed_dims, self.value_dims, self.ratio = embed_dims, value_dims, ratio
        # the sampling grid: levels x heads x points per query
        self.n_levels, self.n_heads, self.n_points = n_levels, n_heads, n_points
        # options of the op (mmvrwkv.ops.ms_deform_attn), passed on as they are
        self.backend, self.dense_max_elements = backend, dense_max_elements
        self.im2col_step = im2col_step
        self.sampling_offsets = nn.Linear(embed_dims, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(embed_dims, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(embed_dims, value_dims)
        self.output_proj = nn.Linear(value_dims, embed_dims)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Zero offset/attention weights; offset biases point every head in its own
        direction (evenly spread angles) at distances 1..n_points; Xavier projections."""
        nH, L, P = self.n_heads, self.n_levels, self.n_points
        nn.init.zeros_(self.sampling_offsets.weight)
        angle = torch.arange(nH, dtype=torch.float32) * (2.0 * math.pi / nH)
        direction = torch.stack([angle.cos(), angle.sin()], -1)  # [nH, 2]
        direction = direction / direction.abs().amax(-1, keepdim=True)
        distance = torch.arange(1, P + 1, dtype=torch.float32).view(1, 1, P, 1)
        bias = direction.view(nH, 1, 1, 2).expand(nH, L, P, 2) * distance
        self.sampling_offsets.bias.copy_(bias.reshape(-1).to(self.sampling_offsets.bias))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor,
                value: torch.Tensor, spatial_shapes: torch.Tensor,
                level_start_index: torch.Tensor, shapes: Sequence[Shape2d]) -> torch.Tensor:
        """``query [B, Q, C]``, ``reference_points [B or 1, Q, 1 or L, 2]`` ((x, y) in [0, 1]),
        ``value [B, S, C]`` (levels of ``shapes`` concatenated) -> ``[B, Q, C]``."""
        B, Q, _ = query.shape
        S = value.shape[1]
        if S != sum(h * w for h, w in shapes) or len(shapes) != self.n_levels:
            raise ValueError(f'value has {S} tokens in {len(shapes)} levels {list(shapes)}, '
                             f'expected {self.n_levels} levels whose sizes sum to {S}')
        nH, L, P = self.n_heads, self.n_levels, self.n_points
        v = self.value_proj(value).view(B, S, nH, self.value_dims // nH)
        offsets = self.sampling_offsets(query).view(B, Q, nH, L, P, 2)
        weights = self.attention_weights(query).view(B, Q, nH, L * P)
        weights = weights.softmax(-1).view(B, Q, nH, L, P)
        # offsets are in pixels of each level: normalise by (w, h)
        wh = torch.tensor([[w, h] for h, w in shapes], dtype=offsets.dtype,
                          device=offsets.device)
        locations = (reference_points[:, :, None, :, None, :]
                     + offsets / wh[None, None, None, :, None, :])
        out = ms_deform_attn(v, shapes, locations, weights, backend=self.backend,
                             dense_max_elements=self.dense_max_elements,
                             spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                             im2col_step=self.im2col_step)
        return self.output_proj(out)

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, value_dims={self.value_dims}, '
                f'n_levels={self.n_levels}, n_heads={self.n_heads}, n_points={self.n_points}')


# ----------------------------------------------------------------------------- deform inputs
def reference_points(shapes: Sequence[Shape2d], device=None) -> torch.Tensor:
    """Pixel centres of the levels ``shapes`` as (x, y) in [0, 1], raster order, levels
    concatenated: ``[1, sum(h*w), 1, 2]`` (the level axis broadcasts over value levels)."""
    points = []
    for h, w in shapes:
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing='ij')
        points.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], -1))
    return torch.cat(points, 0)[None, :, None]


def _level_tensors(shapes: Sequence[Shape2d], device) -> Tuple[torch.Tensor, torch.Tensor]:
    spatial_shapes = torch.tensor(list(shapes), dtype=torch.long, device=device).view(-1, 2)
    sizes = spatial_shapes.prod(1)
    level_start_index = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    return spatial_shapes, level_start_index


def deform_inputs(token_shape: Shape2d, level_shapes: Sequence[Shape2d],
                  device=None) -> Tuple[DeformInputs, DeformInputs]:
    """Inputs of both deformable attentions of an interaction.

    Args:
        token_shape: ``(H', W')`` patch grid of the RWKV tokens.
        level_shapes: ``(h, w)`` of the spatial-prior levels (strides 8, 16, 32).

    Returns:
        ``(injector_inputs, extractor_inputs)``: the injector's queries are the RWKV tokens and
        its values the prior levels; the extractor's queries are the prior levels' tokens and
        its value the RWKV token grid (one level).
    """
    token_shape = (int(token_shape[0]), int(token_shape[1]))
    level_shapes = [(int(h), int(w)) for h, w in level_shapes]
    inj = (reference_points([token_shape], device), *_level_tensors(level_shapes, device),
           level_shapes)
    ext = (reference_points(level_shapes, device), *_level_tensors([token_shape], device),
           [token_shape])
    return inj, ext


# ----------------------------------------------------------------------------- SPM
class SpatialPriorModule(nn.Module):
    """Conv stem producing the spatial prior: maps at strides 4, 8, 16, 32, projected to C.

    ``stem``: three 3x3 convs (the first with stride 2) each followed by norm + ReLU, then a
    3x3/2 max-pool (stride 4, ``inplanes`` channels); ``conv2``/``conv3``/``conv4``: 3x3/2
    conv + norm + ReLU to 2, 4, 4 x ``inplanes`` channels; ``fc1..fc4``: 1x1 convs (with
    bias) to ``embed_dims``.

    Returns ``(c1, c2, c3, c4)``, each ``[B, C, h_i, w_i]``.
    """

    def __init__(self, inplanes: int = 64, embed_dims: int = 384,
                 norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        norm_cfg = dict(type='BN') if norm_cfg is None else norm_cfg

        def conv_norm_relu(cin, cout, stride):
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                    build_norm2d(norm_cfg, cout), nn.ReLU(inplace=True)]

        self.stem = nn.Sequential(*conv_norm_relu(3, inplanes, 2),
                                  *conv_norm_relu(inplanes, inplanes, 1),
                                  *conv_norm_relu(inplanes, inplanes, 1),
                                  nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.conv2 = nn.Sequential(*conv_norm_relu(inplanes, 2 * inplanes, 2))
        self.conv3 = nn.Sequential(*conv_norm_relu(2 * inplanes, 4 * inplanes, 2))
        self.conv4 = nn.Sequential(*conv_norm_relu(4 * inplanes, 4 * inplanes, 2))
        self.fc1 = nn.Conv2d(inplanes, embed_dims, 1)
        self.fc2 = nn.Conv2d(2 * inplanes, embed_dims, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, embed_dims, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, embed_dims, 1)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if x.device.type == 'cpu':
            # oneDNN's convs (and the max-pool) are faster channels-last on the CPU
            # (fwd + bwd of this module, 128 px, 2 cores: 62 vs 75 ms); the outputs keep that
            # layout, so flattening them to tokens ([B, HW, C]) needs no copy.
            x = x.contiguous(memory_format=torch.channels_last)
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return self.fc1(c1), self.fc2(c2), self.fc3(c3), self.fc4(c4)


# ----------------------------------------------------------------------------- ConvFFN
class DWConv(nn.Module):
    """Depthwise 3x3 conv applied to each level of a multi-level token sequence separately."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dims, dims, 3, 1, 1, bias=True, groups=dims)

    def forward(self, x: torch.Tensor, shapes: Sequence[Shape2d]) -> torch.Tensor:
        """``x [B, N, D]`` with ``N = sum(h*w for (h, w) in shapes)`` -> ``[B, N, D]``."""
        B, N, D = x.shape
        sizes = [h * w for h, w in shapes]
        if sum(sizes) != N:
            raise ValueError(f'DWConv got {N} tokens but the levels {list(shapes)} hold '
                             f'{sum(sizes)}')
        outs = []
        for part, (h, w) in zip(x.split(sizes, dim=1), shapes):
            part = part.transpose(1, 2).reshape(B, D, h, w)
            outs.append(self.dwconv(part).flatten(2).transpose(1, 2))
        return torch.cat(outs, dim=1)


class ConvFFN(nn.Module):
    """``fc1 (C -> hidden) -> per-level depthwise 3x3 conv -> GELU -> fc2 (hidden -> C)``."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.dwconv = DWConv(hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, shapes: Sequence[Shape2d]) -> torch.Tensor:
        x = self.act(self.dwconv(self.fc1(x), shapes))
        x = self.drop(x)
        return self.drop(self.fc2(x))


# ----------------------------------------------------------------------------- interactions
def _run(fn, with_cp: bool, *args):
    """``fn(*args)``, recomputed in backward (non-reentrant checkpoint) when ``with_cp``."""
    if with_cp and torch.is_grad_enabled() and any(
            isinstance(a, torch.Tensor) and a.requires_grad for a in args):
        return cp.checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class Injector(nn.Module):
    """Spatial prior -> RWKV tokens:
    ``x = x + gamma * MSDeformAttn(query_norm(x), feat_norm(c))`` over the prior levels."""

    def __init__(self, embed_dims: int, n_levels: int = 3, num_heads: int = 6,
                 n_points: int = 4, deform_ratio: float = 1.0, init_values: float = 0.,
                 norm_eps: float = 1e-6, with_cp: bool = False) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.query_norm = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.feat_norm = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.attn = MSDeformAttn(embed_dims, n_levels, num_heads, n_points, deform_ratio)
        self.gamma = nn.Parameter(torch.full((embed_dims,), float(init_values)))

    def forward(self, x: torch.Tensor, c: torch.Tensor, inputs: DeformInputs) -> torch.Tensor:
        ref, spatial_shapes, start, shapes = inputs

        def inject(x, c):
            attn = self.attn(self.query_norm(x), ref, self.feat_norm(c), spatial_shapes,
                             start, shapes)
            return x + self.gamma * attn

        return _run(inject, self.with_cp and self.training, x, c)


class Extractor(nn.Module):
    """RWKV tokens -> spatial prior:
    ``c = c + MSDeformAttn(query_norm(c), feat_norm(x))`` then, with ``with_cffn``,
    ``c = c + DropPath(ConvFFN(ffn_norm(c)))`` (depthwise conv per prior level)."""

    def __init__(self, embed_dims: int, n_levels: int = 1, num_heads: int = 6,
                 n_points: int = 4, deform_ratio: float = 1.0, with_cffn: bool = True,
                 cffn_ratio: float = 0.25, drop: float = 0., drop_path: float = 0.,
                 norm_eps: float = 1e-6, with_cp: bool = False) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.with_cffn = with_cffn
        self.query_norm = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.feat_norm = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.attn = MSDeformAttn(embed_dims, n_levels, num_heads, n_points, deform_ratio)
        if with_cffn:
            self.ffn = ConvFFN(embed_dims, int(embed_dims * cffn_ratio), drop=drop)
            self.ffn_norm = nn.LayerNorm(embed_dims, eps=norm_eps)
            self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, c: torch.Tensor, x: torch.Tensor, inputs: DeformInputs,
                level_shapes: Sequence[Shape2d]) -> torch.Tensor:
        ref, spatial_shapes, start, shapes = inputs

        def extract(c, x):
            c = c + self.attn(self.query_norm(c), ref, self.feat_norm(x), spatial_shapes,
                              start, shapes)
            if self.with_cffn:
                c = c + self.drop_path(self.ffn(self.ffn_norm(c), level_shapes))
            return c

        return _run(extract, self.with_cp and self.training, c, x)


class InteractionBlock(nn.Module):
    """One adapter interaction around a group of backbone blocks:
    injector -> blocks -> extractor (-> extra extractors).

    The blocks belong to the backbone (``VRWKV.layers``) and are passed to :meth:`forward`,
    so no weights are duplicated.
    """

    def __init__(self, embed_dims: int, num_heads: int = 6, n_points: int = 4,
                 deform_ratio: float = 1.0, init_values: float = 0., drop: float = 0.,
                 drop_path: float = 0., with_cffn: bool = True, cffn_ratio: float = 0.25,
                 extra_extractor: bool = False, norm_eps: float = 1e-6,
                 with_cp: bool = False) -> None:
        super().__init__()
        self.injector = Injector(embed_dims, 3, num_heads, n_points, deform_ratio,
                                 init_values, norm_eps, with_cp)
        ext_args = dict(n_levels=1, num_heads=num_heads, n_points=n_points,
                        deform_ratio=deform_ratio, with_cffn=with_cffn, cffn_ratio=cffn_ratio,
                        drop=drop, drop_path=drop_path, norm_eps=norm_eps, with_cp=with_cp)
        self.extractor = Extractor(embed_dims, **ext_args)
        if extra_extractor:
            self.extra_extractors = nn.ModuleList(
                [Extractor(embed_dims, **ext_args) for _ in range(2)])
        else:
            self.extra_extractors = None

    def forward(self, x: torch.Tensor, c: torch.Tensor, blocks: Sequence[nn.Module],
                patch_resolution: Shape2d, inj_inputs: DeformInputs, ext_inputs: DeformInputs,
                level_shapes: Sequence[Shape2d]) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.injector(x, c, inj_inputs)
        for blk in blocks:
            x = blk(x, patch_resolution)
        c = self.extractor(c, x, ext_inputs, level_shapes)
        if self.extra_extractors is not None:
            for extractor in self.extra_extractors:
                c = extractor(c, x, ext_inputs, level_shapes)
        return x, c


@torch.no_grad()
def init_adapter_weights(m: nn.Module) -> None:
    """Init of the adapter's own modules: Linear trunc-normal(0.02) / zero bias, norms (1, 0),
    (transposed) convs normal(0, sqrt(2 / fan_out)) / zero bias. Apply with ``module.apply``
    and call :meth:`MSDeformAttn.reset_parameters` afterwards."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
        if getattr(m, 'weight', None) is not None:
            nn.init.ones_(m.weight)
        if getattr(m, 'bias', None) is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0., math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


__all__ = ['MSDeformAttn', 'reference_points', 'deform_inputs', 'SpatialPriorModule', 'DWConv',
           'ConvFFN', 'Injector', 'Extractor', 'InteractionBlock', 'init_adapter_weights']
