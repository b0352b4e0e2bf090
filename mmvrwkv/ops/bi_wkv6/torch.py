"""Portable bidirectional WKV6 in plain PyTorch, chunked (autograd, tracing, export).

The right-to-left half is the left-to-right half of the time-reversed sequence (the pairs
s > t of the formula are the pairs s' < t' after reversal, with the same tokens between),
so only the left half is written out: :func:`left_to_right`.

Left half, for chunks of L tokens and ``ld = log d = -exp(w)`` (each <= 0). A pair s < t
decays by ``exp(sum_{s<m<t} ld_m)``, the product is split at the chunk borders:

* within a chunk, an [L, L] matrix per key channel of ``sum_{s<m<t} ld_m``;
* across chunks, an [N, N] state per head carries the tokens of earlier chunks, decayed to
  the chunk start: ``S_{c+1} = diag(exp(tot_c)) S_c + sum_s exp(suf_s) k_s v_s^T`` with
  ``tot_c`` the chunk's sum of ld and ``suf_s = sum_{m>s} ld_m`` (to the chunk end); token
  t reads ``(r_t * exp(pre_t)) @ S_c`` with ``pre_t = sum_{m<t} ld_m`` (from the chunk start).

Exactness. Every exponent is formed as a **direct sum of exactly the ld_m it covers**
(cumulative sums of masked or shifted ld, never the difference of two cumulative sums). The
terms share one sign, so each exponent carries a relative rounding error of at most
~L * eps whatever the size of ld, and ``exp`` of it a relative error of
``|exponent| * L * eps``, negligible wherever the factor is not itself ~0. (The previous
form ``exp(cex_t - cin_s)`` subtracted chunk-local cumulative sums of size ``L * exp(w)``:
its absolute error grew like ``L * exp(w) * eps``; in fp32 it lost 2e-4 (gradients 1e-3)
at w ~ 5, 2e-2 (gradients 0.2) at w ~ 10 and gave inf / NaN from w ~ 20 on, fp64 from
w ~ 40 on; issue 21 measured 6e-3 and 0.87 on its inputs.)

``w`` is clamped at :data:`W_MAX` before the exp: a token of ``w >= W_MAX`` decays every pair
spanning it to exactly 0 in fp32 and fp64 alike (``exp(-exp(30)) = exp(-1.1e13)``), as does
any ``w`` above ~6.6, so the values are unchanged, while the gradient stays 0 instead of
``0 * exp(w) = 0 * inf = NaN`` for ``w`` beyond the float range (w > 88.7 in fp32).

Range (swept against the float64 reference, tests/ops/test_bi_wkv6.py, section 2b: w
uniform in windows from [-30, -20] to [100, 700], slow decays with strong barriers, +-inf,
+-1e30, T up to 1500 there and 4096 while writing it, |r|, |k|, |v| from 1e-12 to 1e10):
exact for **every** w in [-inf, +inf], values and gradients (measured worst relative error
3e-7 in fp32, the target being 1e-5; 6e-15 in fp64), the whole range of the compiled
kernels (whose decays ``exp(-exp(w))`` are products of factors in [0, 1] for any w), and
any T; a NaN in w gives NaN, as in the kernels. r, k, v: any finite values whose products
``r k v``, summed over a head and the tokens, stay inside the float range (the kernels'
fp32 state has the same bound). There is no data-dependent check, so nothing to skip while
tracing. Math in fp32 (fp64 for fp64
inputs), also under autocast (which would otherwise run the einsums in fp16/bf16); returns
r's dtype.
"""
import contextlib

import torch

#: Tokens per chunk: the [L, L, C] intra-chunk matrix costs B * T * L * C memory.
CHUNK_LEN = 32
#: w is clamped here (the decay of a token is exactly 0 from w ~ 6.6 on, in fp64; see above).
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
    dtype. Exact for every w (module docstring: range)."""
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
