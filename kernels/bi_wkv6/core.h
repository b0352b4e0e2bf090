// Bi-WKV6 numerical core, shared by the CPU and the CUDA kernel: every recurrence of the op
// is in this file (formula and derivation: mmvrwkv/ops/bi_wkv6/README.md; how the drivers
// use it: kernels/bi_wkv6/README.md).
//
// Per batch b and head h, key channel j, value channel i, decay d_t[j] = exp(-exp(w_t[j])):
//   y_t[i] = sum_j r_t[j] (u[j] k_t[j] v_t[i] + S_t[j, i] + R_t[j, i])
//   S_t = sum_{s<t} (prod_{s<m<t} d_m) k_s v_s^T,   S_{t+1} = diag(d_t) S_t + k_t v_t^T
//   R_t = sum_{s>t} (prod_{t<m<s} d_m) k_s v_s^T,   R_{t-1} = diag(d_t) R_t + k_t v_t^T
// Decay products are built by multiplying factors in [0, 1]: they never overflow, and no
// difference of large numbers is ever taken, whatever w is.
//
// Two views of the [N, N] states, both free of communication between work items:
//  - columns (column_scan): value channels of one (b, h), all key channels j. Computes y
//    (and, with (r, k, v) -> (k, r, grad_y), the gradient of v). The GPU runs one column and
//    one chunk of ~sqrt(T) tokens per thread (column_chunk_*, chunk states carried between
//    chunks), keeping state blocks [N (j)][N (i)] row-major, so a warp's accesses are
//    coalesced; the CPU runs column_scan on blocks of packs of columns (cpu.cpp) and
//    column_item for the channels of a head past its last full pack.
//  - rows (row_item): key channels of one (b, h), all value channels: gradients of r, k, w
//    and the per-row part of u's. The gradient of w needs the left state S_m and the
//    right-to-left gradient state at the same token m; S is checkpointed every ck_len tokens
//    and recomputed chunk by chunk inside the right-to-left pass (memory O(T / ck_len + ck_len)
//    per row, no per-token states). One key channel per GPU thread and per leftover CPU row
//    (V = A), a pack of key channels per CPU row block (V = Pack).
//
// Reduction orders. The sums over the N channels of a head run in interleaved partial sums
// (channel n into part n mod P, a fixed order: independent multiply-add chains instead of one
// serial one). The scalar items (GPU, CPU leftovers) and the CPU's packs sum in different
// orders (ScalarOrder / PackOrder below), each kept exactly as it was first written, so that
// neither device's results changed when the CPU blocks came to run this code; one order for
// both would change the rounding of one of them. Sums of two products are formed with
// muladd2 (common/value.h), which fixes which product an FMA absorbs on packs and scalars
// alike.
//
// A is the math type (float, or double for double inputs), V the value type (A, or a Pack of
// A: common/simd.h), T the storage type of r, k, v, grad_y (float, double, at::Half,
// at::BFloat16; A on the CPU, which widens its inputs once per call); decays, exp(w) and u
// are A arrays.
#pragma once
#include <stdint.h>

#include "common/value.h"

namespace biwkv6 {

using i64 = int64_t;

// Sizes of one call: r, k, v, w, y are [B, T, C] (C = H * N, contiguous); u is [H, N].
// The gradient pass checkpoints the left states every ck_len tokens (nck checkpoints).
struct Dims {
  i64 B, T, C;
  int H, N;
  int ck_len, nck;
};

// Offset of channel 0 of head h at token t of batch b in a [B, T, C] tensor.
KERNELS_HD i64 token_offset(const Dims& d, i64 b, i64 t, int h) {
  return (b * d.T + t) * d.C + (i64)h * d.N;
}

template <class A, class T> KERNELS_HD A load(const T* p) { return static_cast<A>(*p); }

using kernels::Io;
using kernels::kLanesOf;
using kernels::muladd2;

// The sum orders of the two kinds of items (see "Reduction orders" above).
//   kColumnParts            partial sums over j in column_scan
//   kRowParts, kRowSpread   partial sums over i in row_item; the channels past the last
//                           multiple of kRowParts go into parts 0, 1, .. (spread) or all into 0
//   kRowDotsPerRow          the right-to-left walk of row_item, per token: true, a dot product
//                           per sum (v . g of its own, S . GL and R . GR apart), each gradient
//                           updated as gr + (g . R + u k v.g); false, one pass over i for all
//                           sums (S . GL + R . GR as one), v . g from the driver's table,
//                           (gr + g . R) + u k v.g
struct ScalarOrder {
  static constexpr int kColumnParts = 1, kRowParts = 8;
  static constexpr bool kRowSpread = true, kRowDotsPerRow = true;
};
struct PackOrder {
  static constexpr int kColumnParts = 4, kRowParts = 4;
  static constexpr bool kRowSpread = false, kRowDotsPerRow = false;
};

// step(n, part) for the channels n = 0 .. N-1 in P interleaved partial sums, unrolled by P so
// that the part index is a constant; the tail past the last multiple of P spreads over the
// parts (Spread) or goes into part 0.
template <int P, bool Spread, class Step> KERNELS_HD void over_channels(int N, const Step& step) {
  int n = 0;
  for (; n + P <= N; n += P)
    for (int l = 0; l < P; ++l) step(n + l, l);
  for (int l = 0; n < N; ++n, ++l) step(n, Spread ? l : 0);
}

// The P partial sums, added pairwise: ((p0 + p1) + (p2 + p3)) + ...
template <int P, class V> KERNELS_HD V sum_parts(const V* part) {
  if constexpr (P == 1) {
    return part[0];
  } else {
    return sum_parts<P / 2>(part) + sum_parts<P / 2>(part + P / 2);
  }
}

// ---- column view ------------------------------------------------------------------------
// A column item covers K values of columns [i0, i0 + K lanes) of one (b, h) (V = A: one
// column each, the GPU's items and the CPU's leftover columns; V = Pack: lanes columns each,
// the CPU's blocks), so the K outputs and inputs of a token stay in registers while the scan
// runs over j. States are [N (j)][N (i)] blocks for the scalar items (an item touches only its
// columns of a block) and N x K packs for the CPU's blocks.

// Tokens [t0, t1) of chunk c (chunks of ck_len tokens, the last one possibly shorter).
KERNELS_HD void chunk_tokens(const Dims& d, int c, i64& t0, i64& t1) {
  t0 = (i64)c * d.ck_len;
  t1 = t0 + d.ck_len < d.T ? t0 + d.ck_len : d.T;
}

template <class A> KERNELS_HD void zero_column(const Dims& d, int i0, A* S) {
  for (int j = 0; j < d.N; ++j) S[(i64)j * d.N + i0] = A(0);
}

// acc_t[i] = (sum_j q_t[j] u[j] p_t[j]) x_t[i] for the tokens [t0, t1): the bonus term,
// which initialises the accumulator (scalar items; the CPU's blocks take the bonus
// coefficients from a table).
template <class A, class T>
KERNELS_HD void column_bonus(const Dims& d, i64 b, int h, int i0, i64 t0, i64 t1, const T* q,
                             const T* p, const T* x, const A* u, A* acc) {
  const A* uh = u + (i64)h * d.N;
  for (i64 t = t0; t < t1; ++t) {
    const i64 o = token_offset(d, b, t, h);
    A a = A(0);
    for (int j = 0; j < d.N; ++j) a += load<A>(q + o + j) * uh[j] * load<A>(p + o + j);
    acc[o + i0] = a * load<A>(x + o + i0);
  }
}

// One scan direction over the tokens [t0, t1), from the state S holds (row j of it at
// S + j * s_stride, K values), for the K values of columns from i0: in scan order,
// sum_t = sum_j q_t[j] S[j] (P interleaved partial sums over j) goes to
// emit(t, element offset of the value, x_t, sum_t), then S[j] = dec_t[j] S[j] + p_t[j] x_t.
template <int P, class A, class V, int K, class T, class Emit>
KERNELS_HD void column_scan(const Dims& d, i64 b, int h, int i0, i64 t0, i64 t1, bool reverse,
                            const T* q, const T* p, const T* x, const A* dec, V* S, i64 s_stride,
                            const Emit& emit) {
  constexpr int L = kLanesOf<V>;
  for (i64 n = 0; n < t1 - t0; ++n) {
    const i64 t = reverse ? t1 - 1 - n : t0 + n;
    const i64 o = token_offset(d, b, t, h);
    V xt[K], part[P][K];
    for (int c = 0; c < K; ++c) {
      xt[c] = Io<V>::ld(x + o + i0 + c * L, L);
      for (int l = 0; l < P; ++l) part[l][c] = V(A(0));
    }
    over_channels<P, false>(d.N, [&](int j, int l) {
      const A qj = load<A>(q + o + j), pj = load<A>(p + o + j), dj = dec[o + j];
      V* Sj = S + j * s_stride;
      for (int c = 0; c < K; ++c) {
        part[l][c] = part[l][c] + qj * Sj[c];
        Sj[c] = muladd2(dj, Sj[c], pj, xt[c]);
      }
    });
    for (int c = 0; c < K; ++c) {
      V col[P];
      for (int l = 0; l < P; ++l) col[l] = part[l][c];
      emit(t, o + i0 + c * L, xt[c], sum_parts<P>(col));
    }
  }
}

// Emitters of column_scan: nothing (a chunk summary), or acc += sum (scalar items).
struct Discard {
  template <class V> KERNELS_HD void operator()(i64, i64, const V&, const V&) const {}
};
template <class A> struct AddTo {
  A* acc;
  KERNELS_HD void operator()(i64, i64 e, const A&, const A& sum) const { acc[e] += sum; }
};

// One scalar column: one direction of the scan over [t0, t1) from the column i0 of the
// (b, h) state block S, summing into acc (or nothing: acc null).
template <class A, class T>
KERNELS_HD void column_walk(const Dims& d, i64 b, int h, int i0, i64 t0, i64 t1, bool reverse,
                            const T* q, const T* p, const T* x, const A* dec, A* S, A* acc) {
  if (acc)
    column_scan<ScalarOrder::kColumnParts, A, A, 1>(d, b, h, i0, t0, t1, reverse, q, p, x, dec,
                                                    S + i0, d.N, AddTo<A>{acc});
  else
    column_scan<ScalarOrder::kColumnParts, A, A, 1>(d, b, h, i0, t0, t1, reverse, q, p, x, dec,
                                                    S + i0, d.N, Discard{});
}

// The bidirectional sum over the whole sequence for column i0 of (b, h) (a CPU leftover
// item): acc = y of the formula for (q, p, x) = (r, k, v); the gradient of v for
// (q, p, x) = (k, r, grad_y). S: the (b, h) state block.
template <class A, class T>
KERNELS_HD void column_item(const Dims& d, i64 b, int h, int i0, const T* q, const T* p,
                            const T* x, const A* dec, const A* u, A* S, A* acc) {
  column_bonus<A, T>(d, b, h, i0, 0, d.T, q, p, x, u, acc);
  zero_column<A>(d, i0, S);
  column_walk<A, T>(d, b, h, i0, 0, d.T, false, q, p, x, dec, S, acc);
  zero_column<A>(d, i0, S);
  column_walk<A, T>(d, b, h, i0, 0, d.T, true, q, p, x, dec, S, acc);
}

// The same sum split into chunks (the GPU's items, so that a long sequence gives many), in
// three steps over chunk state blocks EL, ER [B * H][nck][N][N]. Scans are linear in their
// start state: a chunk scanned from S ends in diag(D_c) S + (the chunk scanned from 0), with
// D_c[j] the product of the chunk's decays. So:
//  1. column_chunk_summary: EL(c), ER(c) = chunk c scanned from 0 left-to-right / right-to-left;
//  2. column_carry: per (b, h), EL(c) <- the left state entering chunk c (sum over earlier
//     chunks, carried by D), ER(c) <- the right state entering it from its end;
//  3. column_chunk_walk: chunk c scanned again from those states, accumulating into acc.
template <class A, class T>
KERNELS_HD void column_chunk_summary(const Dims& d, i64 b, int h, int i0, int c, const T* q,
                                     const T* p, const T* x, const A* dec, A* EL, A* ER) {
  i64 t0, t1;
  chunk_tokens(d, c, t0, t1);
  zero_column<A>(d, i0, EL);
  column_walk<A, T>(d, b, h, i0, t0, t1, false, q, p, x, dec, EL, (A*)nullptr);
  zero_column<A>(d, i0, ER);
  column_walk<A, T>(d, b, h, i0, t0, t1, true, q, p, x, dec, ER, (A*)nullptr);
}

// In place over the nck blocks of one (b, h) (EL, ER point at its chunk 0); D: the chunk
// decay products [B, nck, C]. One scalar recurrence per state element (j, i).
template <class A>
KERNELS_HD void column_carry(const Dims& d, i64 b, int h, int i0, const A* D, A* EL, A* ER) {
  const i64 block = (i64)d.N * d.N;
  for (int j = 0; j < d.N; ++j) {
    const i64 e = (i64)j * d.N + i0;
    A left = A(0), right = A(0);
    for (int c = 0; c < d.nck; ++c) {
      const A sum = EL[c * block + e];
      EL[c * block + e] = left;
      left = D[(b * d.nck + c) * d.C + (i64)h * d.N + j] * left + sum;
    }
    for (int c = d.nck - 1; c >= 0; --c) {
      const A sum = ER[c * block + e];
      ER[c * block + e] = right;
      right = D[(b * d.nck + c) * d.C + (i64)h * d.N + j] * right + sum;
    }
  }
}

// Chunk c of the bidirectional sum, from its entering states SL, SR (blocks of chunk c,
// consumed: they are scanned in place).
template <class A, class T>
KERNELS_HD void column_chunk_walk(const Dims& d, i64 b, int h, int i0, int c, const T* q,
                                  const T* p, const T* x, const A* dec, const A* u, A* SL, A* SR,
                                  A* acc) {
  i64 t0, t1;
  chunk_tokens(d, c, t0, t1);
  column_bonus<A, T>(d, b, h, i0, t0, t1, q, p, x, u, acc);
  column_walk<A, T>(d, b, h, i0, t0, t1, false, q, p, x, dec, SL, acc);
  column_walk<A, T>(d, b, h, i0, t0, t1, true, q, p, x, dec, SR, acc);
}

// ---- row view (gradients of r, k, w, u) ----------------------------------------------------

// Scratch of one row item, in values V: 2 N (running states) + 2 nck N (checkpoints of S and
// GR) + 2 ck_len N (their recomputation inside one chunk).
KERNELS_HD i64 row_scratch_len(const Dims& d) {
  return (i64)d.N * (2 + 2 * (i64)d.nck + 2 * (i64)d.ck_len);
}

template <class V> KERNELS_HD void copy_row(V* dst, const V* src, int N) {
  for (int i = 0; i < N; ++i) dst[i] = src[i];
}

// sum_i x[i] * y[i] over N values in P partial sums (over_channels).
template <int P, bool Spread, class A, class X, class Y> KERNELS_HD A dot(const X* x, const Y* y, int N) {
  A part[P];
  for (int l = 0; l < P; ++l) part[l] = A(0);
  over_channels<P, Spread>(N, [&](int i, int l) { part[l] += load<A>(x + i) * load<A>(y + i); });
  return sum_parts<P>(part);
}

// y_i = a * y_i + c * x_i for one row of N values.
template <class A, class T> KERNELS_HD void decay_add(A* y, A a, A c, const T* x, int N) {
  for (int i = 0; i < N; ++i) y[i] = muladd2(a, y[i], c, load<A>(x + i));
}

// Rows [j0, j0 + lanes of V) of (b, h). With the left states S_t (k v, as above) and
// GR_t = sum_{s<t} P(s, t) r_s g_s^T and the right states R_t and GL_t = sum_{s>t} P(t, s)
// r_s g_s^T (g = grad_y, these rows only), states stored [i (value channel)] -> V (the rows):
//   gr_t[j] = g_t . (S_t + R_t) + u_j k_t[j] (v_t . g_t)
//   gk_t[j] = v_t . (GR_t + GL_t) + u_j r_t[j] (v_t . g_t)
//   gw_t[j] = -exp(w_t[j]) d_t[j] (S_t . GL_t + R_t . GR_t)
// Returns these rows' part of gu[h, j] = sum_t r_t[j] k_t[j] (v_t . g_t). gr, gk, gw: A
// arrays [B, T, C] (only channels h * N + j of each token are written). Order: ScalarOrder
// or PackOrder; vg: the PackOrder's table of v_t . g_t [B, T, H] (unused by ScalarOrder).
// scratch: row_scratch_len(d) values.
template <class Order, class A, class V, class T>
KERNELS_HD V row_item(const Dims& d, i64 b, int h, int j0, const T* r, const T* k, const T* v,
                      const T* g, const A* dec, const A* ew, const A* u, const A* vg, V* scratch,
                      A* gr, A* gk, A* gw) {
  constexpr int P = Order::kRowParts, L = kLanesOf<V>;
  constexpr bool kSpread = Order::kRowSpread;
  const int N = d.N, CL = d.ck_len;
  V* S = scratch;                   // left states, then right states
  V* G = S + N;
  V* ckS = G + N;                   // [nck][N]
  V* ckG = ckS + (i64)d.nck * N;
  V* bufS = ckG + (i64)d.nck * N;   // [CL][N]
  V* bufG = bufS + (i64)CL * N;
  for (int i = 0; i < N; ++i) S[i] = G[i] = V(A(0));
  // left-to-right: checkpoints, g . S and v . GR
  for (i64 t = 0; t < d.T; ++t) {
    const i64 o = token_offset(d, b, t, h);
    if (t % CL == 0) {
      copy_row(ckS + (t / CL) * N, S, N);
      copy_row(ckG + (t / CL) * N, G, N);
    }
    const V dj = Io<V>::ld(dec + o + j0, L), kj = Io<V>::ld(k + o + j0, L),
            rj = Io<V>::ld(r + o + j0, L);
    V pr[P], pk[P];
    for (int l = 0; l < P; ++l) pr[l] = pk[l] = V(A(0));
    over_channels<P, kSpread>(N, [&](int i, int l) {
      const A gi = load<A>(g + o + i), vi = load<A>(v + o + i);
      pr[l] = pr[l] + gi * S[i];
      pk[l] = pk[l] + vi * G[i];
      S[i] = muladd2(dj, S[i], kj, vi);
      G[i] = muladd2(dj, G[i], rj, gi);
    });
    Io<V>::st(gr + o + j0, sum_parts<P>(pr), L);
    Io<V>::st(gk + o + j0, sum_parts<P>(pk), L);
  }
  // right-to-left, one checkpoint chunk at a time: recompute S, GR of the chunk, then walk it
  V* R = S;
  V* GL = G;
  for (int i = 0; i < N; ++i) R[i] = GL[i] = V(A(0));
  const V uj = Io<V>::ld(u + (i64)h * N + j0, L);
  V gu = V(A(0));
  for (int c = d.nck - 1; c >= 0; --c) {
    i64 t0, t1;
    chunk_tokens(d, c, t0, t1);
    copy_row(bufS, ckS + (i64)c * N, N);
    copy_row(bufG, ckG + (i64)c * N, N);
    for (i64 t = t0; t + 1 < t1; ++t) {
      const i64 o = token_offset(d, b, t, h);
      const V dj = Io<V>::ld(dec + o + j0, L), kj = Io<V>::ld(k + o + j0, L),
              rj = Io<V>::ld(r + o + j0, L);
      const V* S0 = bufS + (t - t0) * N;
      const V* G0 = bufG + (t - t0) * N;
      V* S1 = bufS + (t - t0 + 1) * N;
      V* G1 = bufG + (t - t0 + 1) * N;
      for (int i = 0; i < N; ++i) {
        S1[i] = muladd2(dj, S0[i], kj, load<A>(v + o + i));
        G1[i] = muladd2(dj, G0[i], rj, load<A>(g + o + i));
      }
    }
    for (i64 t = t1 - 1; t >= t0; --t) {
      const i64 o = token_offset(d, b, t, h);
      const V* St = bufS + (t - t0) * N;
      const V* GRt = bufG + (t - t0) * N;
      const V dj = Io<V>::ld(dec + o + j0, L), kj = Io<V>::ld(k + o + j0, L),
              rj = Io<V>::ld(r + o + j0, L);
      if constexpr (Order::kRowDotsPerRow) {
        // one key channel: its own dots over i, then the state updates
        const A vg = dot<P, kSpread, A>(v + o, g + o, N);
        gr[o + j0] += dot<P, kSpread, A>(g + o, R, N) + uj * kj * vg;
        gk[o + j0] += dot<P, kSpread, A>(v + o, GL, N) + uj * rj * vg;
        gw[o + j0] = -ew[o + j0] * dj * (dot<P, kSpread, A>(St, GL, N) + dot<P, kSpread, A>(R, GRt, N));
        gu += rj * kj * vg;
        decay_add(R, dj, kj, v + o, N);
        decay_add(GL, dj, rj, g + o, N);
      } else {
        // a pack of key channels: one pass over i for every sum and both updates
        V pr[P], pk[P], pw[P];  // g . R, v . GL, S . GL + R . GR
        for (int l = 0; l < P; ++l) pr[l] = pk[l] = pw[l] = V(A(0));
        over_channels<P, kSpread>(N, [&](int i, int l) {
          const A gi = load<A>(g + o + i), vi = load<A>(v + o + i);
          pr[l] = pr[l] + gi * R[i];
          pk[l] = pk[l] + vi * GL[i];
          pw[l] = pw[l] + muladd2(St[i], GL[i], R[i], GRt[i]);
          R[i] = muladd2(dj, R[i], kj, vi);
          GL[i] = muladd2(dj, GL[i], rj, gi);
        });
        const A vgt = vg[(b * d.T + t) * d.H + h];
        Io<V>::st(gr + o + j0, Io<V>::ld(gr + o + j0, L) + sum_parts<P>(pr) + uj * kj * vgt, L);
        Io<V>::st(gk + o + j0, Io<V>::ld(gk + o + j0, L) + sum_parts<P>(pk) + uj * rj * vgt, L);
        Io<V>::st(gw + o + j0, -Io<V>::ld(ew + o + j0, L) * dj * sum_parts<P>(pw), L);
        gu = gu + rj * kj * vgt;
      }
    }
  }
  return gu;
}

}  // namespace biwkv6
