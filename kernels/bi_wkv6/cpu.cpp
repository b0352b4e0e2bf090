// CPU driver of the Bi-WKV6 op: the core's column and row views (core.h) on packs of
// channels (V = PackOf<A>, common/simd.h), under at::parallel_for (torch's thread pool), all
// in A = opmath of the storage type (float for fp32/fp16/bf16 inputs, which are widened once
// per call; double for fp64):
//  - column blocks (forward y, and the gradient of v): one (batch, head, block of
//    kColumnBlockPacks packs of value channels; one pack for the rest of a head), both scans
//    over the whole sequence (column_scan), each token's q[j], p[j], dec[j] broadcast once
//    per block;
//  - row blocks (gradients of r, k, w and u): one (batch, head, pack of key channels), the
//    core's row_item with the state rows stored transposed, [value channel i] -> pack of key
//    channels, so every sum over i (g . S, v . GR, S . GL, R . GR) is a pack multiply-add per
//    i with no horizontal reduction, and each token's v and g are read once for the pack.
// Channels past the last full pack of a head (N % kPackWidth<A> of them) run the core's
// scalar items (column_item / row_item with V = A, the CUDA driver's order).
#include <ATen/Parallel.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/sum.h>

#include <vector>

#include "bi_wkv6/dispatch.h"
#include "common/simd.h"

namespace biwkv6 {
namespace {

using kernels::kPackWidth;
using kernels::PackOf;

// Per (batch, token, head) scalars [B, T, H]: sum_n x[n] y[n] over the head's channels.
at::Tensor head_sums(const at::Tensor& x, const at::Tensor& y, const Dims& d) {
  const std::vector<i64> heads = {d.B, d.T, (i64)d.H, (i64)d.N};
  return at::sum(at::mul(x.view(heads), y.view(heads)), {-1}).contiguous();
}

// ---- column blocks ------------------------------------------------------------------------

// Emitter of a column block's scans: the first direction writes coef_t x_t + sum_t, the
// second adds sum_t. coef [B, T, H]: the bonus coefficients sum_j q u p.
template <class A> struct BlockOutput {
  using V = PackOf<A>;
  const Dims& d;
  i64 b;
  int h;
  const A* coef;
  A* acc;
  bool second;
  void operator()(i64 t, i64 e, const V& xt, const V& sum) const {
    constexpr int L = kPackWidth<A>;
    A* out = acc + e;
    const A bonus = coef[(b * d.T + t) * d.H + h];
    kernels::Io<V>::st(out, second ? kernels::Io<V>::ld(out, L) + sum : bonus * xt + sum, L);
  }
};

// acc_t[i] = coef_t x_t[i] + sum_j q_t[j] (S_t + R_t)[j, i] for the value channels
// [i0, i0 + K packs) of (b, h), with S (left-to-right) and R (right-to-left) the states of
// (p, x) decayed by dec. y for (q, p, x) = (r, k, v), the gradient of v for (k, r, grad_y).
// S: N K packs of scratch (row j of the state block, these columns).
template <class A, int K>
void column_block(const Dims& d, i64 b, int h, int i0, const A* q, const A* p, const A* x,
                  const A* dec, const A* coef, PackOf<A>* S, A* acc) {
  using V = PackOf<A>;
  for (int reverse = 0; reverse < 2; ++reverse) {
    for (int e = 0; e < d.N * K; ++e) S[e] = V(A(0));
    column_scan<PackOrder::kColumnParts, A, V, K>(d, b, h, i0, 0, d.T, reverse != 0, q, p, x, dec,
                                                  S, K, BlockOutput<A>{d, b, h, coef, acc, reverse != 0});
  }
}

// The column view over every (b, h): per head, blocks of kColumnBlockPacks packs, then at
// most one block of 1, then the N % kPackWidth<A> channels after them as the core's
// single-column items (which compute their own bonus).
template <class A>
void columns_cpu(const Dims& d, const A* q, const A* p, const A* x, const A* dec, const A* u,
                 const A* coef, A* acc) {
  constexpr int L = kPackWidth<A>, K = kColumnBlockPacks;
  const int wide = d.N / (K * L), narrow = d.N % (K * L) / L, vector_end = (d.N / L) * L;
  const int per_head = wide + narrow + d.N % L;  // items per (b, h)
  at::parallel_for(0, d.B * d.H * per_head, 1, [&](i64 begin, i64 end) {
    std::vector<PackOf<A>> block_state(K * (size_t)d.N);
    std::vector<A> column_state;  // a [N][N] block for the core's items, when there are any
    for (i64 item = begin; item < end; ++item) {
      const int n = (int)(item % per_head);
      const int h = (int)((item / per_head) % d.H);
      const i64 b = item / per_head / d.H;
      if (n < wide) {
        column_block<A, K>(d, b, h, n * K * L, q, p, x, dec, coef, block_state.data(), acc);
      } else if (n < wide + narrow) {
        column_block<A, 1>(d, b, h, wide * K * L + (n - wide) * L, q, p, x, dec, coef,
                           block_state.data(), acc);
      } else {
        column_state.resize((size_t)d.N * d.N);
        column_item<A, A>(d, b, h, vector_end + (n - wide - narrow), q, p, x, dec, u,
                          column_state.data(), acc);
      }
    }
  });
}

// ---- row blocks ---------------------------------------------------------------------------

// The row view over every (b, h): full packs of key channels as the core's row_item on packs
// (with vg_t = v_t . g_t [B, T, H] given), the N % kPackWidth<A> channels after them as its
// scalar items. gu_part [B, H, N]: the per-batch parts of gu.
template <class A>
void rows_cpu(const Dims& d, const A* r, const A* k, const A* v, const A* g, const A* dec,
              const A* ew, const A* u, const A* vg, A* gr, A* gk, A* gw, A* gu_part) {
  using V = PackOf<A>;
  constexpr int L = kPackWidth<A>;
  const int full = d.N / L;
  const int per_head = full + d.N % L;  // items per (b, h)
  at::parallel_for(0, d.B * d.H * per_head, 1, [&](i64 begin, i64 end) {
    std::vector<V> block_scratch;  // sized on first use (one item's scratch, reused)
    std::vector<A> row_scratch;
    for (i64 item = begin; item < end; ++item) {
      const int n = (int)(item % per_head);
      const int h = (int)((item / per_head) % d.H);
      const i64 b = item / per_head / d.H;
      A* gu = gu_part + (b * d.H + h) * d.N;
      if (n < full) {
        block_scratch.resize(row_scratch_len(d));
        const V part = row_item<PackOrder, A, V>(d, b, h, n * L, r, k, v, g, dec, ew, u, vg,
                                                 block_scratch.data(), gr, gk, gw);
        kernels::Io<V>::st(gu + n * L, part, L);
      } else {
        row_scratch.resize(row_scratch_len(d));
        const int j = full * L + (n - full);
        gu[j] = row_item<ScalarOrder, A, A>(d, b, h, j, r, k, v, g, dec, ew, u, (const A*)nullptr,
                                            row_scratch.data(), gr, gk, gw);
      }
    }
  });
}

}  // namespace

template <> struct Driver<Device::kCpu> : kernels::CpuDriver {
  template <class T, class A>
  static void forward(const Dims& d, const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                      const at::Tensor& w, const at::Tensor& u, at::Tensor& y) {
    const auto math = c10::CppTypeToScalarType<A>::value;
    const Decays dw = decays(w, u, math);
    const at::Tensor rA = r.to(math), kA = k.to(math), vA = v.to(math);
    const at::Tensor coef = head_sums(at::mul(rA, dw.u.view({1, 1, d.C})), kA, d);
    columns_cpu<A>(d, rA.data_ptr<A>(), kA.data_ptr<A>(), vA.data_ptr<A>(), dw.dec.data_ptr<A>(),
                   dw.u.data_ptr<A>(), coef.data_ptr<A>(), y.data_ptr<A>());
  }

  template <class T, class A>
  static void backward(const Dims& d, const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                       const at::Tensor& w, const at::Tensor& u, const at::Tensor& gy, GradsA& g) {
    const auto math = c10::CppTypeToScalarType<A>::value;
    const Decays dw = decays(w, u, math);
    const at::Tensor rA = r.to(math), kA = k.to(math), vA = v.to(math), gA = gy.to(math);
    const A *rp = rA.data_ptr<A>(), *kp = kA.data_ptr<A>(), *vp = vA.data_ptr<A>(),
            *gp = gA.data_ptr<A>();
    const A *dec = dw.dec.data_ptr<A>(), *ew = dw.ew.data_ptr<A>(), *ua = dw.u.data_ptr<A>();
    // gradient of v: the column view with (q, p, x) = (k, r, grad_y), whose bonus
    // coefficient sum_j k u r is the forward's
    const at::Tensor coef = head_sums(at::mul(rA, dw.u.view({1, 1, d.C})), kA, d);
    columns_cpu<A>(d, kp, rp, gp, dec, ua, coef.data_ptr<A>(), g.gv.data_ptr<A>());
    // gradients of r, k, w and the per-batch parts of u's
    const at::Tensor vg = head_sums(vA, gA, d);
    rows_cpu<A>(d, rp, kp, vp, gp, dec, ew, ua, vg.data_ptr<A>(), g.gr.data_ptr<A>(),
                g.gk.data_ptr<A>(), g.gw.data_ptr<A>(), g.gu.data_ptr<A>());
  }
};

template struct Op<Device::kCpu>;

}  // namespace biwkv6
