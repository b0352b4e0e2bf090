"""Building blocks of the VRWKV adapter for dense prediction.

* :class:`SpatialPriorModule` - a small conv stem giving feature maps at strides 4/8/16/32,
  projected to the backbone width C.
* :class:`MSDeformAttn` - multi-scale deformable attention with a value down-projection
  ratio (``value_proj: C -> C*ratio``, ``output_proj: C*ratio -> C``).
* :class:`Injector` (multi-scale features -> RWKV tokens) and :class:`Extractor` (RWKV tokens
  -> multi-scale features, followed by a :class:`ConvFFN`), grouped per interaction in
  :class:`InteractionBlock`.
* :func:`deform_inputs` - reference points and level shapes of both attentions for an input.

Only torch is needed to import this module. The deformable sampling uses mmcv's
``MultiScaleDeformableAttnFunction`` for CUDA tensors and mmcv's
``multi_scale_deformable_attn_pytorch`` otherwise; when mmcv is not installed, an equivalent
pure-PyTorch sampler (``grid_sample`` based, :func:`ms_deform_attn_sampling_torch`, the
reference) is used on every device, so the adapter also runs where mmcv is absent. Small maps
on the CPU (the demos' 128 px inputs) take :func:`ms_deform_attn_sampling_dense`, the same
sampling as one matrix product.
"""
import contextlib
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp

from .drop_path import DropPath

Shape2d = Tuple[int, int]
#: ``(reference_points [1, Q, 1, 2], spatial_shapes [L, 2] long, level_start_index [L] long,
#: value shapes as python ints)`` - everything one deformable attention call needs besides the
#: query and value tensors.
DeformInputs = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List[Shape2d]]

_NORM_TYPES = {
    'BN': nn.BatchNorm2d, 'BN2d': nn.BatchNorm2d, 'BatchNorm2d': nn.BatchNorm2d,
    'SyncBN': nn.SyncBatchNorm, 'SyncBatchNorm': nn.SyncBatchNorm,
    'GN': nn.GroupNorm, 'GroupNorm': nn.GroupNorm,
    'IN': nn.InstanceNorm2d, 'IN2d': nn.InstanceNorm2d, 'InstanceNorm2d': nn.InstanceNorm2d,
}


def build_norm2d(norm_cfg: dict, num_features: int) -> nn.Module:
    """Build a 2-D feature-map norm from an OpenMMLab-style ``norm_cfg`` without mmcv.

    ``type`` is one of 'BN' (BatchNorm2d), 'SyncBN' (SyncBatchNorm), 'GN' (GroupNorm, needs
    ``num_groups``) or 'IN' (InstanceNorm2d); the other keys are passed to the torch class,
    except ``requires_grad`` (False freezes the affine parameters).
    """
    if not isinstance(norm_cfg, dict) or 'type' not in norm_cfg:
        raise ValueError(f'norm_cfg must be a dict with a "type" key, got {norm_cfg!r}')
    cfg = dict(norm_cfg)
    norm_type = cfg.pop('type')
    requires_grad = cfg.pop('requires_grad', True)
    if isinstance(norm_type, type) and issubclass(norm_type, nn.Module):
        cls = norm_type
    elif norm_type in _NORM_TYPES:
        cls = _NORM_TYPES[norm_type]
    else:
        raise ValueError(f'unsupported norm type {norm_type!r} in norm_cfg; use one of '
                         f'{sorted(_NORM_TYPES)}')
    if cls is nn.GroupNorm:
        if 'num_groups' not in cfg:
            raise ValueError('norm_cfg of type GN needs num_groups')
        layer = nn.GroupNorm(num_channels=num_features, **cfg)
    else:
        layer = cls(num_features, **cfg)
    for p in layer.parameters():
        p.requires_grad_(requires_grad)
    return layer


# ----------------------------------------------------------------------------- sampling
def _mmcv_msda():
    """mmcv's (CUDA autograd function, pure-PyTorch function), or None without mmcv."""
    try:
        from mmcv.ops.multi_scale_deform_attn import (MultiScaleDeformableAttnFunction,
                                                      multi_scale_deformable_attn_pytorch)
    except ImportError:
        return None
    return MultiScaleDeformableAttnFunction, multi_scale_deformable_attn_pytorch


def ms_deform_attn_sampling_torch(value: torch.Tensor, shapes: Sequence[Shape2d],
                                  sampling_locations: torch.Tensor,
                                  attention_weights: torch.Tensor) -> torch.Tensor:
    """Multi-scale deformable sampling in plain PyTorch (used when mmcv is not installed).

    Args:
        value: ``[B, S, nH, D]``, the levels' tokens concatenated in raster order.
        shapes: ``(h, w)`` of each level (``sum(h*w) == S``).
        sampling_locations: ``[B, Q, nH, L, P, 2]`` as (x, y) in [0, 1] of each level
            (0 and 1 are the outer edges of the map).
        attention_weights: ``[B, Q, nH, L, P]``.

    Returns:
        ``[B, Q, nH*D]``: for every head, the attention-weighted sum of the bilinearly
        sampled values (zero outside the map).
    """
    B, _, nH, D = value.shape
    Q, L, P = sampling_locations.shape[1], sampling_locations.shape[3], \
        sampling_locations.shape[4]
    grids = sampling_locations * 2 - 1  # grid_sample works in [-1, 1]
    out = value.new_zeros(B * nH, D, Q)
    start = 0
    for lvl, (h, w) in enumerate(shapes):
        v = value[:, start:start + h * w]
        start += h * w
        v = v.permute(0, 2, 3, 1).reshape(B * nH, D, h, w)
        g = grids[:, :, :, lvl].permute(0, 2, 1, 3, 4).reshape(B * nH, Q, P, 2)
        sampled = F.grid_sample(v, g, mode='bilinear', padding_mode='zeros',
                                align_corners=False)  # [B*nH, D, Q, P]
        a = attention_weights[:, :, :, lvl].permute(0, 2, 1, 3).reshape(B * nH, 1, Q, P)
        out = out + (sampled * a).sum(-1)
    return out.reshape(B, nH * D, Q).transpose(1, 2).contiguous()


#: Largest dense sampling matrix (``B * nH * Q * S`` elements) for which the CPU takes
#: :func:`ms_deform_attn_sampling_dense` instead of ``grid_sample``. Measured on 2 CPU cores
#: (fwd + bwd, ``tools/analysis/benchmark_msda.py``, archs T/S/B, 128-384 px, batch 1/2/4):
#: the dense form is up to 5x faster on small maps (1.8-1.9x for the T demos' batches of four
#: 128 px images) and mostly slower at 384 px (up to 4.5x); with this bound the faster one is
#: taken in 65 of the 72 cases, the other seven costing at most 1.6x. Read at every call: a
#: program may set it (0 turns the dense form off) for a CPU with another crossover.
DENSE_SAMPLING_MAX_ELEMENTS = 1 << 22


def uses_dense_sampling(device_type: str, dense_elements: int) -> bool:
    """Whether :func:`ms_deform_attn_sampling` takes the dense form for a sampling matrix of
    ``dense_elements`` (``B * nH * Q * S``) on ``device_type``: on the CPU, for a non-empty
    matrix up to :data:`DENSE_SAMPLING_MAX_ELEMENTS`, and never while tracing (FLOP counting
    records the ``grid_sample`` path)."""
    return (device_type == 'cpu' and 0 < dense_elements <= DENSE_SAMPLING_MAX_ELEMENTS
            and not torch.jit.is_tracing())


def ms_deform_attn_sampling_dense(value: torch.Tensor, shapes: Sequence[Shape2d],
                                  sampling_locations: torch.Tensor,
                                  attention_weights: torch.Tensor) -> torch.Tensor:
    """The sampling of :func:`ms_deform_attn_sampling_torch` as one dense matrix product.

    Bilinear sampling followed by the attention-weighted sum is linear in ``value``: for each
    batch item and head, ``out = M @ value`` with ``M [Q, S]`` holding, for every query, the
    attention weight times the bilinear weight of each of the four pixels around each of its
    sampling points (zero for pixels outside the map, as ``grid_sample``'s zero padding).
    ``M`` is built with one ``scatter_add_``; autograd differentiates through the bilinear
    weights (locations), the attention weights and the product (value).

    Cost grows with ``Q * S`` instead of ``Q * L * P``: cheaper than ``grid_sample`` on the CPU
    for small maps only (see :data:`DENSE_SAMPLING_MAX_ELEMENTS`). Same arguments and result
    as :func:`ms_deform_attn_sampling_torch`.
    """
    B, S, nH, D = value.shape
    Q, L, P = sampling_locations.shape[1], sampling_locations.shape[3], \
        sampling_locations.shape[4]
    if (sampling_locations.shape[:3] != (B, Q, nH) or len(shapes) != L
            or attention_weights.shape != sampling_locations.shape[:-1]):
        raise ValueError(
            f'sampling_locations {tuple(sampling_locations.shape)} and attention_weights '
            f'{tuple(attention_weights.shape)} do not fit value {tuple(value.shape)} and '
            f'{len(shapes)} levels: expected [B={B}, Q, nH={nH}, L={len(shapes)}, P, 2] and '
            f'[B, Q, nH, L, P]')
    device = value.device
    h = torch.tensor([s[0] for s in shapes], device=device).view(L, 1)
    w = torch.tensor([s[1] for s in shapes], device=device).view(L, 1)
    sizes = [hh * ww for hh, ww in shapes]
    start = torch.tensor([sum(sizes[:i]) for i in range(L)], device=device).view(L, 1)
    loc = sampling_locations.transpose(1, 2)  # [B, nH, Q, L, P, 2]
    attn = attention_weights.transpose(1, 2)  # [B, nH, Q, L, P]
    x = loc[..., 0] * w - 0.5  # pixel coordinates (align_corners=False)
    y = loc[..., 1] * h - 0.5
    x0, y0 = x.detach().floor(), y.detach().floor()
    fx, fy = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    # is the left/right (top/bottom) neighbour inside the map?
    in_x0, in_x1 = (x0 >= 0) & (x0 < w), (x0 >= -1) & (x0 < w - 1)
    in_y0, in_y1 = (y0 >= 0) & (y0 < h), (y0 >= -1) & (y0 < h - 1)
    ax0, ax1 = attn * (1 - fx) * in_x0, attn * fx * in_x1  # attention x left/right weight
    wy0, wy1 = (1 - fy) * in_y0, fy * in_y1  # top/bottom weight
    weight = torch.stack((ax0 * wy0, ax1 * wy0, ax0 * wy1, ax1 * wy1), -1)
    corner = start + y0 * w + x0  # top-left neighbour's token index
    # pixels outside the map have weight 0; clamping only keeps their index in range
    index = torch.stack((corner, corner + 1, corner + w, corner + w + 1), -1).clamp_(0, S - 1)
    dense = value.new_zeros(B, nH, Q, S).scatter_add_(
        -1, index.view(B, nH, Q, 4 * L * P), weight.view(B, nH, Q, 4 * L * P))
    out = dense @ value.transpose(1, 2)  # [B, nH, Q, D]
    return out.transpose(1, 2).reshape(B, Q, nH * D)


def _largest_divisor_upto(n: int, cap: int) -> int:
    step = max(1, min(n, cap))
    while n % step:
        step -= 1
    return step


def ms_deform_attn_sampling(value: torch.Tensor, spatial_shapes: torch.Tensor,
                            level_start_index: torch.Tensor, shapes: Sequence[Shape2d],
                            sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
                            im2col_step: int = 64) -> torch.Tensor:
    """Dispatch of the deformable sampling (see :func:`ms_deform_attn_sampling_torch` for
    the shapes): mmcv's CUDA function for CUDA tensors; on other devices the dense form
    (:func:`ms_deform_attn_sampling_dense`) for small maps on the CPU, else mmcv's PyTorch
    implementation, or our own PyTorch version without mmcv. While tracing (FLOP analysis,
    ``tools/analysis/get_flops.py``) the CPU always takes the ``grid_sample`` path: its cost,
    4 FLOPs per sampled value, is the one counted, whatever the map size.

    Half/bfloat16 inputs (AMP) are sampled in float32 with autocast off (mmcv's kernel has no
    half path, and sampling locations need float32 precision); the result is cast back to
    ``value``'s dtype. float64 stays float64.
    """
    dtype = value.dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    value = value.to(compute)
    sampling_locations = sampling_locations.to(compute)
    attention_weights = attention_weights.to(compute)
    device_type = value.device.type
    no_autocast = torch.autocast(device_type, enabled=False) \
        if device_type in ('cuda', 'cpu') else contextlib.nullcontext()
    B, S, nH, _ = value.shape
    dense = uses_dense_sampling(device_type, B * nH * sampling_locations.shape[1] * S)
    mmcv_fns = None if dense else _mmcv_msda()
    with no_autocast:
        if dense:
            out = ms_deform_attn_sampling_dense(value, shapes, sampling_locations,
                                                attention_weights)
        elif mmcv_fns is None:
            out = ms_deform_attn_sampling_torch(value, shapes, sampling_locations,
                                                attention_weights)
        elif value.is_cuda:
            step = _largest_divisor_upto(value.shape[0], im2col_step)
            out = mmcv_fns[0].apply(value, spatial_shapes, level_start_index,
                                    sampling_locations, attention_weights, step)
        else:
            out = mmcv_fns[1](value, spatial_shapes, sampling_locations, attention_weights)
    return out.to(dtype)


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
    """

    def __init__(self, embed_dims: int = 256, n_levels: int = 4, n_heads: int = 8,
                 n_points: int = 4, ratio: float = 1.0, im2col_step: int = 64) -> None:
        super().__init__()
        value_dims = int(embed_dims * ratio)
        if value_dims < 1 or value_dims % n_heads:
            raise ValueError(f'embed_dims*ratio = {embed_dims}*{ratio} = {value_dims} must be '
                             f'a positive multiple of n_heads={n_heads}')
        self.embed_dims = embed_dims
        self.value_dims = value_dims
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.ratio = ratio
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
        out = ms_deform_attn_sampling(v, spatial_shapes, level_start_index, shapes, locations,
                                      weights, self.im2col_step)
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


__all__ = ['build_norm2d', 'ms_deform_attn_sampling', 'ms_deform_attn_sampling_torch',
           'ms_deform_attn_sampling_dense', 'DENSE_SAMPLING_MAX_ELEMENTS', 'uses_dense_sampling',
           'MSDeformAttn', 'reference_points', 'deform_inputs', 'SpatialPriorModule', 'DWConv',
           'ConvFFN', 'Injector', 'Extractor', 'InteractionBlock', 'init_adapter_weights']
