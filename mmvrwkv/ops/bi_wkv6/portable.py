"""Portable bidirectional WKV6 in plain PyTorch, chunked (autograd, tracing, export, FLOP
counting): the left-to-right half per chunk of ``CHUNK_LEN`` tokens with an [N, N] state per
head carried across chunks, the right half as the left half of the reversed sequence. Every
exponent is a direct sum of the log-decays it covers, so it is exact for every w in
[-inf, +inf] and any T (derivation, range and the sweep that measured it: ``README.md``
beside this file). Math in fp32 (fp64 for fp64 inputs), autocast off; returns r's dtype.
"""
import contextlib

import torch

#: Tokens per chunk: the [L, L, C] intra-chunk matrix costs B * T * L * C memory.
CHUNK_LEN = 32
#: w is clamped here (the decay of a token is exactly 0 from w ~ 6.6 on, in fp64; README.md).
W_MAX = 30.0


def _shift_along(x: torch.Tensor, dim: int, forward: bool) -> torch.Tensor:
    """``x`` moved one position along ``dim``, zero filled: ``out[i] = x[i - 1]`` when
    ``forward`` (previous element), else ``out[i] = x[i + 1]`` (next element)."""
    n = x.shape[dim]
    zero = torch.zeros_like(x.narrow(dim, 0, 1))
    if forward:
        return torch.cat([zero, x.narrow(dim, 0, n - 1)], dim)
    return torch.cat([x.narrow(dim, 1, n - 1), zero], dim)


def left_to_right(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ld: torch.Tensor,
                  chunk_len: int = CHUNK_LEN) -> torch.Tensor:
    """``sum_{s<t} (prod_{s<m<t} d_m) ...`` of the formula, for r, k, v, ld ``[B, T, H, N]``."""
    B, T, H, N = k.shape
    L = max(1, min(chunk_len, T))
    pad = (-T) % L
    if pad:  # zero tokens after the end: they only ever act as (empty) sources
        r, k, v, ld = (torch.nn.functional.pad(x, (0, 0, 0, 0, 0, pad)) for x in (r, k, v, ld))
    nch = (T + pad) // L
    r, k, v, ld = (x.reshape(B, nch, L, H, N) for x in (r, k, v, ld))
    ld_prev = _shift_along(ld, 2, forward=True)                # ld_{t-1}, 0 at the chunk start
    ld_next = _shift_along(ld, 2, forward=False)               # ld_{s+1}, 0 at the chunk end
    pre = torch.cumsum(ld_prev, dim=2)                         # sum_{start<=m<t} ld_m
    suf = torch.cumsum(ld_next.flip(2), dim=2).flip(2)         # sum_{s<m<=end} ld_m
    tot = ld.sum(dim=2)                                        # [B, nch, H, N]
    # within chunks: expo[t, s] = sum_{s<m<t} ld_m, a cumulative sum over t (from s + 2 on)
    # of ld_{t-1}; the pair (t, s) is used for s < t only.
    idx = torch.arange(L, device=k.device)
    spans = (idx[:, None] >= idx[None, :] + 2)[:, :, None, None]   # [L (t), L (s), 1, 1]
    causal = (idx[:, None] > idx[None, :])[:, :, None, None]
    zero = torch.zeros((), dtype=ld.dtype, device=ld.device)
    expo = torch.cumsum(torch.where(spans, ld_prev[:, :, :, None], zero), dim=2)
    decay = torch.where(causal, expo, torch.full_like(zero, float('-inf'))).exp()
    a = torch.einsum('bcthn,bctshn,bcshn->bctsh', r, decay, k)
    y = torch.einsum('bctsh,bcshi->bcthi', a, v)
    # across chunks: state at each chunk start, then y_t += (r_t exp(pre_t)) @ S_c
    chunk_kv = torch.einsum('bcshj,bcshi->bchji', k * torch.exp(suf), v)
    carry = torch.exp(tot)                                     # [B, nch, H, N]
    states = [torch.zeros_like(chunk_kv[:, 0])]
    for c in range(nch - 1):
        states.append(carry[:, c, :, :, None] * states[-1] + chunk_kv[:, c])
    state = torch.stack(states, dim=1)                         # [B, nch, H, N (j), N (i)]
    y = y + torch.einsum('bcthj,bchji->bcthi', r * torch.exp(pre), state)
    return y.reshape(B, nch * L, H, N)[:, :T]


def bi_wkv6_torch(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
                  u: torch.Tensor, chunk_len: int = CHUNK_LEN) -> torch.Tensor:
    """Bidirectional WKV6 for r, k, v, w ``[B, T, C]``, u ``[H, N]``; ``[B, T, C]`` in r's
    dtype. Exact for every w (``README.md``: range)."""
    B, T, C = k.shape
    H, N = u.shape
    if k.numel() == 0:  # keep the (empty) result connected to the inputs for autograd
        return r * 0 + k * 0 + v * 0 + w.to(r.dtype) * 0 + u.sum().to(r.dtype) * 0
    dtype = torch.float64 if r.dtype == torch.float64 else torch.float32
    device_type = r.device.type
    no_autocast = (torch.autocast(device_type, enabled=False)
                   if torch.amp.is_autocast_available(device_type) else contextlib.nullcontext())
    with no_autocast:
        r4, k4, v4 = (x.to(dtype).reshape(B, T, H, N) for x in (r, k, v))
        ld = -torch.exp(torch.clamp(w.to(dtype), max=W_MAX)).reshape(B, T, H, N)
        uf = u.to(dtype)
        bonus = (r4 * uf * k4).sum(-1, keepdim=True) * v4
        left = left_to_right(r4, k4, v4, ld, chunk_len)
        rev = [x.flip(1) for x in (r4, k4, v4, ld)]
        right = left_to_right(*rev, chunk_len=chunk_len).flip(1)
        return (bonus + left + right).reshape(B, T, C).to(r.dtype)
