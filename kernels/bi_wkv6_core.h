// Bi-WKV6 numerical core, shared by the CPU and the CUDA kernel (kernels/README.md, section
// "Bi-WKV6", has the formula and the derivation of every recurrence used here).
//
// Per batch b and head h, key channel j, value channel i, decay d_t[j] = exp(-exp(w_t[j])):
//   y_t[i] = sum_j r_t[j] (u[j] k_t[j] v_t[i] + S_t[j, i] + R_t[j, i])
//   S_t = sum_{s<t} (prod_{s<m<t} d_m) k_s v_s^T,   S_{t+1} = diag(d_t) S_t + k_t v_t^T
//   R_t = sum_{s>t} (prod_{t<m<s} d_m) k_s v_s^T,   R_{t-1} = diag(d_t) R_t + k_t v_t^T
// Decay products are built by multiplying factors in [0, 1]: they never overflow, and no
// difference of large numbers is ever taken, whatever w is.
//
// Two views of the [N, N] states, both free of communication between work items:
//  - columns: W value channels [i0, i0 + W) of one (b, h), all key channels j. Computes y
//    (and, with (r, k, v) -> (k, r, grad_y), the gradient of v). The GPU runs one column and
//    one chunk of ~sqrt(T) tokens per thread (column_chunk_*, chunk states carried between
//    chunks), keeping state blocks [N (j)][N (i)] row-major, so a warp's accesses are
//    coalesced; the CPU (bi_wkv6_cpu.cpp) runs SIMD blocks of columns of its own and
//    column_item / row_item below for the channels of a head past its last full vector.
//  - rows (row_item): one key channel j of one (b, h), all value channels: gradients of r, k,
//    w and the per-row part of u's. The gradient of w needs the left state S_m and the
//    right-to-left gradient state at the same token m; S is checkpointed every ck_len tokens
//    and recomputed chunk by chunk inside the right-to-left pass (memory O(T / ck_len + ck_len)
//    per row, no per-token states).
// A is the math type (float, or double for double inputs), T the storage type of r, k, v,
// grad_y (float, double, at::Half, at::BFloat16); decays, exp(w) and u are A arrays.
#pragma once
#include <stdint.h>

#if defined(__CUDACC__)
#define BIWKV6_HD __host__ __device__ __forceinline__
#else
#define BIWKV6_HD inline
#endif

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
BIWKV6_HD i64 token_offset(const Dims& d, i64 b, i64 t, int h) {
  return (b * d.T + t) * d.C + (i64)h * d.N;
}

template <class A, class T> BIWKV6_HD A load(const T* p) { return static_cast<A>(*p); }

// sum_i x[i] * y[i] over N values, in eight interleaved partial sums (a fixed order, which
// the compiler may keep in vector registers without reassociating anything).
template <class A, class X, class Y> BIWKV6_HD A dot(const X* x, const Y* y, int N) {
  A part[8] = {A(0), A(0), A(0), A(0), A(0), A(0), A(0), A(0)};
  int i = 0;
  for (; i + 8 <= N; i += 8)
    for (int l = 0; l < 8; ++l) part[l] += load<A>(x + i + l) * load<A>(y + i + l);
  for (int l = 0; i < N; ++i, ++l) part[l] += load<A>(x + i) * load<A>(y + i);
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

// ---- column view ------------------------------------------------------------------------
// A column item covers W consecutive value channels [i0, i0 + W) of one (b, h); W is a
// compile-time width (1 for the GPU and for the CPU's rest columns), so the
// W outputs and inputs of a token stay in registers while the scan runs over j. States are
// [N (j)][N (i)] blocks; an item touches only its columns of a block.

// Tokens [t0, t1) of chunk c (chunks of ck_len tokens, the last one possibly shorter).
BIWKV6_HD void chunk_tokens(const Dims& d, int c, i64& t0, i64& t1) {
  t0 = (i64)c * d.ck_len;
  t1 = t0 + d.ck_len < d.T ? t0 + d.ck_len : d.T;
}

template <class A, int W> BIWKV6_HD void zero_columns(const Dims& d, int i0, A* S) {
  for (int j = 0; j < d.N; ++j)
    for (int c = 0; c < W; ++c) S[(i64)j * d.N + i0 + c] = A(0);
}

// acc_t[i] = (sum_j q_t[j] u[j] p_t[j]) x_t[i] for the tokens [t0, t1): the bonus term,
// which initialises the accumulator.
template <class A, class T, int W>
BIWKV6_HD void column_bonus(const Dims& d, i64 b, int h, int i0, i64 t0, i64 t1, const T* q,
                            const T* p, const T* x, const A* u, A* acc) {
  const A* uh = u + (i64)h * d.N;
  for (i64 t = t0; t < t1; ++t) {
    const i64 o = token_offset(d, b, t, h);
    A a = A(0);
    for (int j = 0; j < d.N; ++j) a += load<A>(q + o + j) * uh[j] * load<A>(p + o + j);
    for (int c = 0; c < W; ++c) acc[o + i0 + c] = a * load<A>(x + o + i0 + c);
  }
}

// One scan direction over the tokens [t0, t1), from the state S holds: in scan order,
// acc_t[i] += sum_j q_t[j] S[j, i] (skipped when acc is null: a chunk summary), then
// S[j, i] = dec_t[j] S[j, i] + p_t[j] x_t[i].
template <class A, class T, int W>
BIWKV6_HD void column_scan(const Dims& d, i64 b, int h, int i0, i64 t0, i64 t1, bool reverse,
                           const T* q, const T* p, const T* x, const A* dec, A* S, A* acc) {
  for (i64 n = 0; n < t1 - t0; ++n) {
    const i64 t = reverse ? t1 - 1 - n : t0 + n;
    const i64 o = token_offset(d, b, t, h);
    A xt[W], yt[W];
    for (int c = 0; c < W; ++c) {
      xt[c] = load<A>(x + o + i0 + c);
      yt[c] = A(0);
    }
    for (int j = 0; j < d.N; ++j) {
      const A qj = load<A>(q + o + j), pj = load<A>(p + o + j), dj = dec[o + j];
      A* Sj = S + (i64)j * d.N + i0;
      for (int c = 0; c < W; ++c) {
        yt[c] += qj * Sj[c];
        Sj[c] = dj * Sj[c] + pj * xt[c];
      }
    }
    if (acc)
      for (int c = 0; c < W; ++c) acc[o + i0 + c] += yt[c];
  }
}

// The bidirectional sum over the whole sequence for columns [i0, i0 + W) of (b, h) (a CPU
// item): acc = y of the formula for (q, p, x) = (r, k, v); the gradient of v for
// (q, p, x) = (k, r, grad_y). S: the (b, h) state block.
template <class A, class T, int W>
BIWKV6_HD void column_item(const Dims& d, i64 b, int h, int i0, const T* q, const T* p,
                           const T* x, const A* dec, const A* u, A* S, A* acc) {
  column_bonus<A, T, W>(d, b, h, i0, 0, d.T, q, p, x, u, acc);
  zero_columns<A, W>(d, i0, S);
  column_scan<A, T, W>(d, b, h, i0, 0, d.T, false, q, p, x, dec, S, acc);
  zero_columns<A, W>(d, i0, S);
  column_scan<A, T, W>(d, b, h, i0, 0, d.T, true, q, p, x, dec, S, acc);
}

// The same sum split into chunks (the GPU's items, so that a long sequence gives many), in
// three steps over chunk state blocks EL, ER [B * H][nck][N][N]. Scans are linear in their
// start state: a chunk scanned from S ends in diag(D_c) S + (the chunk scanned from 0), with
// D_c[j] the product of the chunk's decays. So:
//  1. column_chunk_summary: EL(c), ER(c) = chunk c scanned from 0 left-to-right / right-to-left;
//  2. column_carry: per (b, h), EL(c) <- the left state entering chunk c (sum over earlier
//     chunks, carried by D), ER(c) <- the right state entering it from its end;
//  3. column_chunk_walk: chunk c scanned again from those states, accumulating into acc.
template <class A, class T, int W>
BIWKV6_HD void column_chunk_summary(const Dims& d, i64 b, int h, int i0, int c, const T* q,
                                    const T* p, const T* x, const A* dec, A* EL, A* ER) {
  i64 t0, t1;
  chunk_tokens(d, c, t0, t1);
  zero_columns<A, W>(d, i0, EL);
  column_scan<A, T, W>(d, b, h, i0, t0, t1, false, q, p, x, dec, EL, (A*)nullptr);
  zero_columns<A, W>(d, i0, ER);
  column_scan<A, T, W>(d, b, h, i0, t0, t1, true, q, p, x, dec, ER, (A*)nullptr);
}

// In place over the nck blocks of one (b, h) (EL, ER point at its chunk 0); D: the chunk
// decay products [B, nck, C]. One scalar recurrence per state element (j, i).
template <class A, int W>
BIWKV6_HD void column_carry(const Dims& d, i64 b, int h, int i0, const A* D, A* EL, A* ER) {
  const i64 block = (i64)d.N * d.N;
  for (int j = 0; j < d.N; ++j) {
    for (int cc = 0; cc < W; ++cc) {
      const i64 e = (i64)j * d.N + i0 + cc;
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
}

// Chunk c of the bidirectional sum, from its entering states SL, SR (blocks of chunk c,
// consumed: they are scanned in place).
template <class A, class T, int W>
BIWKV6_HD void column_chunk_walk(const Dims& d, i64 b, int h, int i0, int c, const T* q,
                                 const T* p, const T* x, const A* dec, const A* u, A* SL, A* SR,
                                 A* acc) {
  i64 t0, t1;
  chunk_tokens(d, c, t0, t1);
  column_bonus<A, T, W>(d, b, h, i0, t0, t1, q, p, x, u, acc);
  column_scan<A, T, W>(d, b, h, i0, t0, t1, false, q, p, x, dec, SL, acc);
  column_scan<A, T, W>(d, b, h, i0, t0, t1, true, q, p, x, dec, SR, acc);
}

// ---- row view (gradients of r, k, w, u) ----------------------------------------------------

// Scratch of one row, in A values: 2 N (running states) + 2 nck N (checkpoints of S and GR)
// + 2 ck_len N (their recomputation inside one chunk).
BIWKV6_HD i64 row_scratch_len(const Dims& d) {
  return (i64)d.N * (2 + 2 * (i64)d.nck + 2 * (i64)d.ck_len);
}

// y_i = a * y_i + c * x_i for one row of N values.
template <class A, class T> BIWKV6_HD void decay_add(A* y, A a, A c, const T* x, int N) {
  for (int i = 0; i < N; ++i) y[i] = a * y[i] + c * load<A>(x + i);
}

// next_i = a * prev_i + c * x_i (the step of decay_add into another row).
template <class A, class T>
BIWKV6_HD void decay_add_to(A* next, const A* prev, A a, A c, const T* x, int N) {
  for (int i = 0; i < N; ++i) next[i] = a * prev[i] + c * load<A>(x + i);
}

template <class A> BIWKV6_HD void copy_row(A* dst, const A* src, int N) {
  for (int i = 0; i < N; ++i) dst[i] = src[i];
}

// Row j of (b, h). With the left states S_t (k v, as above) and GR_t = sum_{s<t} P(s, t) r_s g_s^T
// and the right states R_t and GL_t = sum_{s>t} P(t, s) r_s g_s^T (g = grad_y, rows j only):
//   gr_t[j] = g_t . (S_t + R_t) + u_j k_t[j] (v_t . g_t)
//   gk_t[j] = v_t . (GR_t + GL_t) + u_j r_t[j] (v_t . g_t)
//   gw_t[j] = -exp(w_t[j]) d_t[j] (S_t . GL_t + R_t . GR_t)
// Returns this row's part of gu[h, j] = sum_t r_t[j] k_t[j] (v_t . g_t). gr, gk, gw: A
// arrays [B, T, C] (only channel h * N + j of each token is written).
template <class A, class T>
BIWKV6_HD A row_item(const Dims& d, i64 b, int h, int j, const T* r, const T* k, const T* v,
                     const T* g, const A* dec, const A* ew, const A* u, A* scratch, A* gr,
                     A* gk, A* gw) {
  const int N = d.N, L = d.ck_len;
  A* S = scratch;                   // left states, then right states
  A* G = S + N;
  A* ckS = G + N;                   // [nck][N]
  A* ckG = ckS + (i64)d.nck * N;
  A* bufS = ckG + (i64)d.nck * N;   // [L][N]
  A* bufG = bufS + (i64)L * N;
  for (int i = 0; i < N; ++i) S[i] = G[i] = A(0);
  // left-to-right: checkpoints, g . S and v . GR
  for (i64 t = 0; t < d.T; ++t) {
    const i64 o = token_offset(d, b, t, h);
    if (t % L == 0) {
      copy_row(ckS + (t / L) * N, S, N);
      copy_row(ckG + (t / L) * N, G, N);
    }
    gr[o + j] = dot<A>(g + o, S, N);
    gk[o + j] = dot<A>(v + o, G, N);
    const A dj = dec[o + j];
    decay_add(S, dj, load<A>(k + o + j), v + o, N);
    decay_add(G, dj, load<A>(r + o + j), g + o, N);
  }
  // right-to-left, one checkpoint chunk at a time: recompute S, GR of the chunk, then walk it
  A* R = S;
  A* GL = G;
  for (int i = 0; i < N; ++i) R[i] = GL[i] = A(0);
  const A uj = u[(i64)h * N + j];
  A gu = A(0);
  for (int c = d.nck - 1; c >= 0; --c) {
    i64 t0, t1;
    chunk_tokens(d, c, t0, t1);
    copy_row(bufS, ckS + (i64)c * N, N);
    copy_row(bufG, ckG + (i64)c * N, N);
    for (i64 t = t0; t + 1 < t1; ++t) {
      const i64 o = token_offset(d, b, t, h);
      A* nS = bufS + (t - t0 + 1) * N;
      A* nG = bufG + (t - t0 + 1) * N;
      decay_add_to(nS, nS - N, dec[o + j], load<A>(k + o + j), v + o, N);
      decay_add_to(nG, nG - N, dec[o + j], load<A>(r + o + j), g + o, N);
    }
    for (i64 t = t1 - 1; t >= t0; --t) {
      const i64 o = token_offset(d, b, t, h);
      const A* St = bufS + (t - t0) * N;
      const A* GRt = bufG + (t - t0) * N;
      const A rj = load<A>(r + o + j), kj = load<A>(k + o + j), dj = dec[o + j];
      const A vg = dot<A>(v + o, g + o, N);
      gr[o + j] += dot<A>(g + o, R, N) + uj * kj * vg;
      gk[o + j] += dot<A>(v + o, GL, N) + uj * rj * vg;
      gw[o + j] = -ew[o + j] * dj * (dot<A>(St, GL, N) + dot<A>(R, GRt, N));
      gu += rj * kj * vg;
      decay_add(R, dj, kj, v + o, N);
      decay_add(GL, dj, rj, g + o, N);
    }
  }
  return gu;
}

}  // namespace biwkv6
