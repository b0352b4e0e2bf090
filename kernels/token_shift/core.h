// Token-shift-and-mix numerical core, shared by the CPU and the CUDA kernel.
//
// For tokens x [B, T, C] (raster order over an H x W grid) and coefficients mix [M, C]:
//
//   out[m, b, t, c] = lerp(xs[b, t, c], x[b, t, c], mix[m, c]),
//   xs[b, t, c]     = x[b, src(t, c), c]   (0 where the source lies outside the grid)
//
// The source of a channel depends only on its group: inside each head of head_size channels,
// channels [0, q) come from s columns to the left, [q, 2q) from the right, [2q, 3q) from s rows
// above, [3q, 4q) from below, the rest of the head is unchanged (Q-Shift; q_shift is one head
// of C channels); token_shift takes every channel from s tokens earlier; none keeps x.
//
// Backward (mmvrwkv/ops/token_shift/README.md): the shift is a 0/1 matrix S, so
//   gx   = sum_m g[m] * mix[m] + S^T (sum_m g[m] * (1 - mix[m])),
//   gmix[m, c] = sum_{b,t} g[m, b, t, c] * (x - xs)[b, t, c],
// and S^T is the shift in the opposite direction (the "adjoint" source below). Nothing but x
// and mix is needed: xs is re-read from x.
#pragma once

#include "common/value.h"

namespace tshift {

typedef long long i64;

// Shift families; the Python modes map onto them (host.h, mode_of).
enum Mode : int { kQuad = 0, kPrev = 1, kNone = 2 };

// Channel groups: the four Q-Shift directions, unchanged, previous tokens (token_shift).
enum Group : int { kFromLeft = 0, kFromRight = 1, kFromAbove = 2, kFromBelow = 3, kSelf = 4, kFromPrev = 5 };

struct Geometry {
  i64 B, T, C;    // x is [B, T, C]
  i64 H, W;       // grid (kQuad only), H * W == T
  i64 s;          // shift_pixel >= 0
  i64 head_size;  // channels per head (kQuad), divides C
  i64 quarter;    // channels per direction inside a head (kQuad), 4 * quarter <= head_size
  int mode;
};

// Group of channel c.
KERNELS_HD int group_of(const Geometry& g, i64 c) {
  if (g.mode == kNone || g.s == 0) return kSelf;
  if (g.mode == kPrev) return kFromPrev;
  const i64 within = c % g.head_size;
  return within < 4 * g.quarter ? (int)(within / g.quarter) : kSelf;
}

// End (exclusive) of the run of channels from c on that share c's group.
KERNELS_HD i64 group_end(const Geometry& g, i64 c) {
  if (group_of(g, c) == kFromPrev || g.mode == kNone || g.s == 0) return g.C;
  const i64 head0 = c - c % g.head_size;
  const i64 within = c - head0;
  const i64 end = within < 4 * g.quarter ? (within / g.quarter + 1) * g.quarter : g.head_size;
  return head0 + end;
}

// Token (index inside its batch item) that channel group `group` of token t at grid cell
// (h, w) = (t / W, t % W) reads (adjoint = false) or is read by (adjoint = true, the
// transposed shift); -1 outside the grid. The CPU driver passes (h, w) once per token.
KERNELS_HD i64 source_token_at(const Geometry& g, int group, i64 t, i64 h, i64 w, bool adjoint) {
  if (group == kSelf) return t;
  const i64 s = adjoint ? -g.s : g.s;
  if (group == kFromPrev) {
    const i64 src = t - s;
    return (src >= 0 && src < g.T) ? src : -1;
  }
  if (group == kFromLeft) w -= s;
  else if (group == kFromRight) w += s;
  else if (group == kFromAbove) h -= s;
  else h += s;  // kFromBelow
  return (h >= 0 && h < g.H && w >= 0 && w < g.W) ? h * g.W + w : -1;
}

KERNELS_HD i64 source_token(const Geometry& g, int group, i64 t, bool adjoint) {
  const bool grid = g.mode == kQuad && group != kSelf;
  return source_token_at(g, group, t, grid ? t / g.W : 0, grid ? t % g.W : 0, adjoint);
}

// torch.lerp's formula (aten/src/ATen/native/Lerp.h), so the fused op rounds like the
// unfused lerp: start + w (end - start) for |w| < 1/2, end - (end - start)(1 - w) otherwise.
// Both branches are computed and one selected (no short-circuit), so that the CPU driver's
// channel loops vectorise with a blend.
template <class A> KERNELS_HD A lerp(A start, A end, A w) {
  const A diff = end - start;
  const A lo = start + w * diff, hi = end - diff * (A(1) - w);
  return ((w < A(0.5)) & (w > A(-0.5))) ? lo : hi;
}

}  // namespace tshift
