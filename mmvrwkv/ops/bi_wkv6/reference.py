"""The bidirectional WKV6 formula summed pair by pair in float64: O(T^2), for tests only.

Per batch and head, key channel j, value channel i, decay ``d = exp(-exp(w))``:

    y_t[i] = sum_j r_t[j] * ( u[j] k_t[j] v_t[i]
                              + sum_{s<t} (prod_{s<m<t} d_m[j]) k_s[j] v_s[i]
                              + sum_{s>t} (prod_{t<m<s} d_m[j]) k_s[j] v_s[i] )

Only the tokens strictly between s and t decay the pair; the bonus u enters once, for s = t.
"""
import torch


def pair_log_decay(w: torch.Tensor) -> torch.Tensor:
    """``[B, T (t), T (s), C]`` float64: ``sum of log d_m`` over the m strictly between s and t
    (0 for |s - t| <= 1; the diagonal is unused).

    Each entry is summed directly over its own tokens (a cumulative sum over t of the masked
    ``log d_{t-1}``), never as the difference of two prefix sums, which would cancel
    catastrophically once ``exp(w)`` is large (w >~ 25 in float64). The terms share one sign,
    so the sum is exact to round-off for every w; ``w = +inf`` gives ``-inf`` (decay 0).
    """
    ld = -torch.exp(w.double())                                   # log d, [B, T, C]
    T = w.shape[1]
    t = torch.arange(T, device=w.device)
    prev = torch.cat([torch.zeros_like(ld[:, :1]), ld[:, :-1]], dim=1)    # log d_{t-1}
    # lower[t, s] = sum_{s<m<t} log d_m = sum over t' <= t with t' >= s + 2 of log d_{t'-1}
    spans = (t[:, None] >= t[None, :] + 2)[None, :, :, None]
    lower = torch.cumsum(torch.where(spans, prev[:, :, None, :], prev.new_zeros(())), dim=1)
    # the tokens between s and t are the same for (t, s) and (s, t): mirror the lower half
    below = (t[:, None] > t[None, :])[None, :, :, None]
    return torch.where(below, lower, lower.transpose(1, 2))


def bi_wkv6_reference(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
                      u: torch.Tensor) -> torch.Tensor:
    """Return y (float64, ``[B, T, C]``) for r, k, v, w ``[B, T, C]`` and u ``[H, N]``."""
    B, T, C = k.shape
    H, N = u.shape
    r, k, v, u = r.double(), k.double(), v.double(), u.double().reshape(C)
    decay = pair_log_decay(w).exp()                               # [B, T, T, C]
    eye = torch.eye(T, dtype=torch.bool, device=k.device)[None, :, :, None]
    weight = torch.where(eye, u.expand_as(decay), decay)          # u on the diagonal
    # a[b, t, s, c] = r_t[c] * weight[t, s, c] * k_s[c]; summed over the key channels of a head
    a = r[:, :, None, :] * weight * k[:, None, :, :]
    a = a.reshape(B, T, T, H, N).sum(-1)                          # [B, T, S, H]
    y = torch.einsum('btsh,bshi->bthi', a, v.reshape(B, T, H, N))
    return y.reshape(B, T, C)
