"""Portable bidirectional WKV6 in plain PyTorch, chunked (autograd, tracing, export).

The right-to-left half is the left-to-right half of the time-reversed sequence (the pairs
s > t of the formula are the pairs s' < t' after reversal, with the same tokens between),
so only the left half is written out: :func:`left_to_right`.

Left half, for chunks of L tokens and ``ld = log d = -exp(w)``, with inclusive / exclusive
chunk-local cumulative sums ``cin_t = sum_{m<=t} ld_m``, ``cex_t = cin_t - ld_t``:

* within a chunk, the pair s < t decays by ``exp(cex_t - cin_s)`` (the tokens s < m < t):
  an [L, L] matrix per key channel, each exponent <= 0 (no overflow);
* across chunks, an [N, N] state per head carries the tokens of earlier chunks, decayed to
  the chunk start: ``S_{c+1} = diag(exp(cin_last)) S_c + sum_s exp(cin_last - cin_s) k_s v_s^T``,
  and token t reads ``(r_t * exp(cex_t)) @ S_c``.

Every exponent is a difference of chunk-local cumulative log-decays and <= 0, so fp32 neither
overflows nor divides. Math in fp32 (fp64 for fp64 inputs), also under autocast (which
would otherwise run the einsums in fp16/bf16); returns r's dtype.
"""
import contextlib

import torch

#: Tokens per chunk: the [L, L, C] intra-chunk matrix costs B * T * L * C memory.
CHUNK_LEN = 32


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
    cin = torch.cumsum(ld, dim=2)
    cex = cin - ld
    # within chunks: a[t, s] = sum_j r_t[j] k_s[j] exp(cex_t[j] - cin_s[j]) for s < t
    causal = torch.ones(L, L, dtype=torch.bool, device=k.device).tril(-1)[:, :, None, None]
    expo = cex[:, :, :, None] - cin[:, :, None, :]             # [B, nch, L (t), L (s), H, N]
    decay = torch.where(causal, expo, torch.full_like(expo, float('-inf'))).exp()
    a = torch.einsum('bcthn,bctshn,bcshn->bctsh', r, decay, k)
    y = torch.einsum('bctsh,bcshi->bcthi', a, v)
    # across chunks: state at each chunk start, then y_t += (r_t exp(cex_t)) @ S_c
    last = cin[:, :, -1:]                                      # [B, nch, 1, H, N]
    chunk_kv = torch.einsum('bcshj,bcshi->bchji', k * torch.exp(last - cin), v)
    carry = torch.exp(last[:, :, 0])                           # [B, nch, H, N]
    states = [torch.zeros_like(chunk_kv[:, 0])]
    for c in range(nch - 1):
        states.append(carry[:, c, :, :, None] * states[-1] + chunk_kv[:, c])
    state = torch.stack(states, dim=1)                         # [B, nch, H, N (j), N (i)]
    y = y + torch.einsum('bcthj,bchji->bcthi', r * torch.exp(cex), state)
    return y.reshape(B, nch * L, H, N)[:, :T]


def bi_wkv6_torch(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
                  u: torch.Tensor, chunk_len: int = CHUNK_LEN) -> torch.Tensor:
    """Bidirectional WKV6 for r, k, v, w ``[B, T, C]``, u ``[H, N]``; ``[B, T, C]`` in r's dtype."""
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
        ld = -torch.exp(w.to(dtype)).reshape(B, T, H, N)
        uf = u.to(dtype)
        bonus = (r4 * uf * k4).sum(-1, keepdim=True) * v4
        left = left_to_right(r4, k4, v4, ld, chunk_len)
        rev = [x.flip(1) for x in (r4, k4, v4, ld)]
        right = left_to_right(*rev, chunk_len=chunk_len).flip(1)
        return (bonus + left + right).reshape(B, T, C).to(r.dtype)
