// CPU driver of the Bi-WKV6 op (math: kernels/README.md, section "Bi-WKV6"). Work items run
// under at::parallel_for (torch's thread pool), all in A = opmath of the storage type (float
// for fp32/fp16/bf16 inputs, which are widened once per call; double for fp64):
//  - column blocks (forward y, and the gradient of v): one (batch, head, block of value
//    channels two SIMD vectors wide, 2 kLanes channels; one vector for the rest of a head),
//    both scans over the whole sequence, each token's q[j], p[j], dec[j] broadcast once;
//  - row blocks (gradients of r, k, w and u): one (batch, head, block of kLanes key
//    channels), state rows stored transposed, [value channel i][key channel lane], so every
//    sum over i (g . S, v . GR, S . GL, R . GR) is a vector multiply-add per i with no
//    horizontal reduction, and each token's v and g are read once for the kLanes rows.
// Channels past the last full block of a head (N % kLanes of them) run the scalar items of
// the shared core (column_item / row_item of bi_wkv6_core.h, also the CUDA driver's code).
#include <ATen/Parallel.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/sum.h>

#include <cstring>
#include <vector>

#include "bi_wkv6.h"

namespace biwkv6 {
namespace {

// ---- SIMD vectors -------------------------------------------------------------------------
// One register of the build's target (setup.py: -march=native by default): 64 bytes with
// AVX-512, 32 with AVX, 16 otherwise (SSE, NEON), as GCC / Clang vector extensions. A wider
// vector than the registers would be split into several and run out of registers. Vectors
// are passed only between inlined functions of this file (internal linkage), so GCC's note
// that returning them changes the calling convention (-Wpsabi) concerns no ABI.
#if defined(__AVX512F__)
#define BIWKV6_CPU_VECTOR_BYTES 64
#elif defined(__AVX__)
#define BIWKV6_CPU_VECTOR_BYTES 32
#else
#define BIWKV6_CPU_VECTOR_BYTES 16
#endif
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
template <class A> struct Simd;
template <> struct Simd<float> {
  typedef float V __attribute__((vector_size(BIWKV6_CPU_VECTOR_BYTES)));
};
template <> struct Simd<double> {
  typedef double V __attribute__((vector_size(BIWKV6_CPU_VECTOR_BYTES)));
};
template <class A> using Vec = typename Simd<A>::V;
template <class A> constexpr int kLanes = (int)(sizeof(Vec<A>) / sizeof(A));

template <class A> inline Vec<A> load_vec(const A* p) {
  Vec<A> x;
  std::memcpy(&x, p, sizeof x);
  return x;
}

template <class A> inline void store_vec(A* p, const Vec<A>& x) { std::memcpy(p, &x, sizeof x); }

// Sums over the N channels of a head run in kParts interleaved partial sums (channel n into
// part n % kParts, a fixed order): independent multiply-add chains instead of one serial one.
constexpr int kParts = 4;

template <class V> inline V sum_parts(const V* part) {
  return (part[0] + part[1]) + (part[2] + part[3]);
}

// step(n, n % kParts) for the channels n = 0 .. N-1 (the tail past the last multiple of
// kParts into part 0), unrolled by kParts so that the part index is a constant.
template <class Step> inline void over_channels(int N, const Step& step) {
  int n = 0;
  for (; n + kParts <= N; n += kParts)
    for (int l = 0; l < kParts; ++l) step(n + l, l);
  for (; n < N; ++n) step(n, 0);
}

// Per (batch, token, head) scalars [B, T, H]: sum_n x[n] y[n] over the head's channels.
at::Tensor head_sums(const at::Tensor& x, const at::Tensor& y, const Dims& d) {
  const std::vector<i64> heads = {d.B, d.T, (i64)d.H, (i64)d.N};
  return at::sum(at::mul(x.view(heads), y.view(heads)), {-1}).contiguous();
}

// ---- column blocks ------------------------------------------------------------------------

// acc_t[i] = coef_t x_t[i] + sum_j q_t[j] (S_t + R_t)[j, i] for the value channels
// [i0, i0 + K kLanes) of (b, h), with S (left-to-right) and R (right-to-left) the states of
// (p, x) decayed by dec; coef [B, T, H]. y for (q, p, x) = (r, k, v), the gradient of v for
// (k, r, grad_y). S: N K vectors of scratch (row j of the state block, these columns). K = 2
// shares each token's broadcasts of q[j], p[j], dec[j] between two vectors of columns.
template <class A, int K>
void column_block(const Dims& d, i64 b, int h, int i0, const A* q, const A* p, const A* x,
                  const A* dec, const A* coef, Vec<A>* S, A* acc) {
  using V = Vec<A>;
  const int N = d.N;
  for (int reverse = 0; reverse < 2; ++reverse) {
    for (int e = 0; e < N * K; ++e) S[e] = V{};
    for (i64 n = 0; n < d.T; ++n) {
      const i64 t = reverse ? d.T - 1 - n : n;
      const i64 o = token_offset(d, b, t, h);
      const A *qt = q + o, *pt = p + o, *dt = dec + o;
      V xt[K], part[kParts][K] = {};
      for (int c = 0; c < K; ++c) xt[c] = load_vec(x + o + i0 + c * kLanes<A>);
      over_channels(N, [&](int j, int l) {
        for (int c = 0; c < K; ++c) {
          V& s = S[j * K + c];
          part[l][c] += qt[j] * s;
          s = dt[j] * s + pt[j] * xt[c];
        }
      });
      const A bonus = coef[(b * d.T + t) * d.H + h];
      for (int c = 0; c < K; ++c) {
        A* out = acc + o + i0 + c * kLanes<A>;
        const V y = (part[0][c] + part[1][c]) + (part[2][c] + part[3][c]);
        store_vec(out, reverse ? load_vec(out) + y : bonus * xt[c] + y);
      }
    }
  }
}

// The column view over every (b, h): per head, blocks of 2 vectors, then at most one block
// of 1, then the N % kLanes channels after them as the core's single-column items (which
// compute their own bonus).
template <class A>
void columns_cpu(const Dims& d, const A* q, const A* p, const A* x, const A* dec, const A* u,
                 const A* coef, A* acc) {
  constexpr int L = kLanes<A>;
  const int wide = d.N / (2 * L), narrow = d.N % (2 * L) / L, vector_end = (d.N / L) * L;
  const int per_head = wide + narrow + d.N % L;  // items per (b, h)
  at::parallel_for(0, d.B * d.H * per_head, 1, [&](i64 begin, i64 end) {
    std::vector<Vec<A>> block_state(2 * (size_t)d.N);
    std::vector<A> column_state;  // a [N][N] block for the core's items, when there are any
    for (i64 item = begin; item < end; ++item) {
      const int n = (int)(item % per_head);
      const int h = (int)((item / per_head) % d.H);
      const i64 b = item / per_head / d.H;
      if (n < wide) {
        column_block<A, 2>(d, b, h, n * 2 * L, q, p, x, dec, coef, block_state.data(), acc);
      } else if (n < wide + narrow) {
        column_block<A, 1>(d, b, h, wide * 2 * L, q, p, x, dec, coef, block_state.data(), acc);
      } else {
        column_state.resize((size_t)d.N * d.N);
        column_item<A, A, 1>(d, b, h, vector_end + (n - wide - narrow), q, p, x, dec, u,
                             column_state.data(), acc);
      }
    }
  });
}

// ---- row blocks ---------------------------------------------------------------------------

// Scratch of one row block, in vectors: running states (2 N), checkpoints of S and GR every
// ck_len tokens (2 nck N), their recomputation inside one chunk (2 ck_len N).
i64 row_block_scratch_len(const Dims& d) {
  return (i64)d.N * (2 + 2 * (i64)d.nck + 2 * (i64)d.ck_len);
}

// The key channels [j0, j0 + kLanes) of (b, h): row_item of the core for kLanes rows at once
// (same recurrences, same checkpoints), with vg_t = v_t . g_t [B, T, H] given. Writes gr, gk,
// gw of these channels and their parts of gu (gu_part [B, H, N], batch b).
template <class A>
void row_block(const Dims& d, i64 b, int h, int j0, const A* r, const A* k, const A* v,
               const A* g, const A* dec, const A* ew, const A* u, const A* vg, Vec<A>* scratch,
               A* gr, A* gk, A* gw, A* gu_part) {
  using V = Vec<A>;
  const int N = d.N, L = d.ck_len;
  V* S = scratch;  // left states S, GR; then right states R, GL ([i] -> the kLanes rows)
  V* G = S + N;
  V* ckS = G + N;  // [nck][N]
  V* ckG = ckS + (i64)d.nck * N;
  V* bufS = ckG + (i64)d.nck * N;  // [L][N]
  V* bufG = bufS + (i64)L * N;
  for (int i = 0; i < N; ++i) S[i] = G[i] = V{};
  // left-to-right: checkpoints, g . S and v . GR
  for (i64 t = 0; t < d.T; ++t) {
    const i64 o = token_offset(d, b, t, h);
    if (t % L == 0) {
      std::memcpy(ckS + (t / L) * N, S, sizeof(V) * N);
      std::memcpy(ckG + (t / L) * N, G, sizeof(V) * N);
    }
    const A *vt = v + o, *gt = g + o;
    const V dd = load_vec(dec + o + j0), kk = load_vec(k + o + j0), rr = load_vec(r + o + j0);
    V pr[kParts] = {}, pk[kParts] = {};
    auto step = [&](int i, int l) {
      pr[l] += gt[i] * S[i];
      pk[l] += vt[i] * G[i];
      S[i] = dd * S[i] + kk * vt[i];
      G[i] = dd * G[i] + rr * gt[i];
    };
    over_channels(N, step);
    store_vec(gr + o + j0, sum_parts(pr));
    store_vec(gk + o + j0, sum_parts(pk));
  }
  // right-to-left, one checkpoint chunk at a time: recompute S, GR of the chunk, then walk it
  V* R = S;
  V* GL = G;
  for (int i = 0; i < N; ++i) R[i] = GL[i] = V{};
  const V uu = load_vec(u + (i64)h * N + j0);
  V gu = V{};
  for (int c = d.nck - 1; c >= 0; --c) {
    i64 t0, t1;
    chunk_tokens(d, c, t0, t1);
    std::memcpy(bufS, ckS + (i64)c * N, sizeof(V) * N);
    std::memcpy(bufG, ckG + (i64)c * N, sizeof(V) * N);
    for (i64 t = t0; t + 1 < t1; ++t) {
      const i64 o = token_offset(d, b, t, h);
      const A *vt = v + o, *gt = g + o;
      const V dd = load_vec(dec + o + j0), kk = load_vec(k + o + j0), rr = load_vec(r + o + j0);
      const V* S0 = bufS + (t - t0) * N;
      const V* G0 = bufG + (t - t0) * N;
      V* S1 = bufS + (t - t0 + 1) * N;
      V* G1 = bufG + (t - t0 + 1) * N;
      for (int i = 0; i < N; ++i) {
        S1[i] = dd * S0[i] + kk * vt[i];
        G1[i] = dd * G0[i] + rr * gt[i];
      }
    }
    for (i64 t = t1 - 1; t >= t0; --t) {
      const i64 o = token_offset(d, b, t, h);
      const A *vt = v + o, *gt = g + o;
      const V dd = load_vec(dec + o + j0), kk = load_vec(k + o + j0), rr = load_vec(r + o + j0);
      const V* St = bufS + (t - t0) * N;
      const V* GRt = bufG + (t - t0) * N;
      V pr[kParts] = {}, pk[kParts] = {}, pw[kParts] = {};
      auto step = [&](int i, int l) {
        pr[l] += gt[i] * R[i];
        pk[l] += vt[i] * GL[i];
        pw[l] += St[i] * GL[i] + R[i] * GRt[i];
        R[i] = dd * R[i] + kk * vt[i];
        GL[i] = dd * GL[i] + rr * gt[i];
      };
      over_channels(N, step);
      const A vgt = vg[(b * d.T + t) * d.H + h];
      store_vec(gr + o + j0, load_vec(gr + o + j0) + sum_parts(pr) + uu * kk * vgt);
      store_vec(gk + o + j0, load_vec(gk + o + j0) + sum_parts(pk) + uu * rr * vgt);
      store_vec(gw + o + j0, -load_vec(ew + o + j0) * dd * sum_parts(pw));
      gu += rr * kk * vgt;
    }
  }
  store_vec(gu_part + (b * d.H + h) * N + j0, gu);
}

// The row view over every (b, h): full blocks as row_block, the N % kLanes channels after
// them as the core's single-row items.
template <class A>
void rows_cpu(const Dims& d, const A* r, const A* k, const A* v, const A* g, const A* dec,
              const A* ew, const A* u, const A* vg, A* gr, A* gk, A* gw, A* gu_part) {
  const int full = d.N / kLanes<A>;
  const int per_head = full + d.N % kLanes<A>;  // items per (b, h)
  at::parallel_for(0, d.B * d.H * per_head, 1, [&](i64 begin, i64 end) {
    std::vector<Vec<A>> block_scratch;  // sized on first use (one item's scratch, reused)
    std::vector<A> row_scratch;
    for (i64 item = begin; item < end; ++item) {
      const int n = (int)(item % per_head);
      const int h = (int)((item / per_head) % d.H);
      const i64 b = item / per_head / d.H;
      if (n < full) {
        block_scratch.resize(row_block_scratch_len(d));
        row_block<A>(d, b, h, n * kLanes<A>, r, k, v, g, dec, ew, u, vg, block_scratch.data(),
                     gr, gk, gw, gu_part);
      } else {
        row_scratch.resize(row_scratch_len(d));
        const int j = full * kLanes<A> + (n - full);
        gu_part[(b * d.H + h) * d.N + j] =
            row_item<A, A>(d, b, h, j, r, k, v, g, dec, ew, u, row_scratch.data(), gr, gk, gw);
      }
    }
  });
}

}  // namespace

at::Tensor bi_wkv6_forward_cpu(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& w, const at::Tensor& u) {
  check_inputs(r, k, v, w, u, false);
  const Dims d = make_dims(r, u);
  at::Tensor y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), "bi_wkv6_forward_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    const auto math = c10::CppTypeToScalarType<A>::value;
    const Decays dw = decays(w, u, math);
    const at::Tensor rA = r.to(math), kA = k.to(math), vA = v.to(math);
    const at::Tensor coef = head_sums(at::mul(rA, dw.u.view({1, 1, d.C})), kA, d);
    auto acc = at::empty(r.sizes(), r.options().dtype(math));
    columns_cpu<A>(d, rA.data_ptr<A>(), kA.data_ptr<A>(), vA.data_ptr<A>(), dw.dec.data_ptr<A>(),
                   dw.u.data_ptr<A>(), coef.data_ptr<A>(), acc.data_ptr<A>());
    y = acc.to(r.scalar_type());
  });
  return y;
}

std::vector<at::Tensor> bi_wkv6_backward_cpu(const at::Tensor& r, const at::Tensor& k,
                                             const at::Tensor& v, const at::Tensor& w,
                                             const at::Tensor& u, const at::Tensor& gy) {
  check_inputs(r, k, v, w, u, false);
  check_grad(gy, r);
  const Dims d = make_dims(r, u);
  std::vector<at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), "bi_wkv6_backward_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    const auto math = c10::CppTypeToScalarType<A>::value;
    const auto opt = r.options().dtype(math);
    const Decays dw = decays(w, u, math);
    const at::Tensor rA = r.to(math), kA = k.to(math), vA = v.to(math), gA = gy.to(math);
    const A *rp = rA.data_ptr<A>(), *kp = kA.data_ptr<A>(), *vp = vA.data_ptr<A>(),
            *gp = gA.data_ptr<A>();
    const A *dec = dw.dec.data_ptr<A>(), *ew = dw.ew.data_ptr<A>(), *ua = dw.u.data_ptr<A>();
    // gradient of v: the column view with (q, p, x) = (k, r, grad_y), whose bonus
    // coefficient sum_j k u r is the forward's
    const at::Tensor coef = head_sums(at::mul(rA, dw.u.view({1, 1, d.C})), kA, d);
    auto gv = at::empty(r.sizes(), opt);
    columns_cpu<A>(d, kp, rp, gp, dec, ua, coef.data_ptr<A>(), gv.data_ptr<A>());
    // gradients of r, k, w and the per-batch parts of u's
    const at::Tensor vg = head_sums(vA, gA, d);
    auto gr = at::empty(r.sizes(), opt);
    auto gk = at::empty(r.sizes(), opt);
    auto gw = at::empty(r.sizes(), opt);
    auto gu = at::empty({d.B, d.H, d.N}, opt);
    rows_cpu<A>(d, rp, kp, vp, gp, dec, ew, ua, vg.data_ptr<A>(), gr.data_ptr<A>(),
                gk.data_ptr<A>(), gw.data_ptr<A>(), gu.data_ptr<A>());
    out = {gr.to(r.scalar_type()), gk.to(r.scalar_type()), gv.to(r.scalar_type()),
           gw.to(w.scalar_type()), gu.sum(0).to(u.scalar_type())};
  });
  return out;
}

}  // namespace biwkv6
