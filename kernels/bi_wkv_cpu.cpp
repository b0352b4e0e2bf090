// CPU driver of the Bi-WKV op: at::parallel_for (torch's OpenMP pool, so torch.set_num_threads
// applies) over (batch, chunk, channel pack), SIMD across the channels of a pack. All
// arithmetic is in bi_wkv_core.h (shared with the CUDA kernel).
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <vector>

#include "bi_wkv.h"
#include "bi_wkv_core.h"
#include "bi_wkv_cpu_pack.h"

namespace biwkv {
namespace {

template <class A> struct PackWidth;
template <> struct PackWidth<float> { static constexpr int value = 16; };
template <> struct PackWidth<double> { static constexpr int value = 8; };

template <class A> using PackOf = Pack<A, PackWidth<A>::value>;

// Per-thread scratch of at least n States, reused across work items and calls (allocating
// it per item cost more than a short chunk walk).
template <class V> State<V>* scratch(size_t n) {
  thread_local std::vector<State<V>> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Runs fn(b, j, c0, lanes) for every (batch, chunk, channel pack) in parallel.
template <class F> void for_items(const Dims& d, int W, bool per_chunk, F fn) {
  const i64 npack = (d.C + W - 1) / W;
  const i64 nch = per_chunk ? d.nch : 1;
  const i64 n = d.B * nch * npack;
  at::parallel_for(0, n, 1, [&](i64 begin, i64 end) {
    for (i64 it = begin; it < end; ++it) {
      const i64 p = it % npack;
      const i64 bj = it / npack;
      const i64 c0 = p * W;
      const int lanes = (int)std::min<i64>(W, d.C - c0);
      fn(bj / nch, (int)(bj % nch), c0, lanes);
    }
  });
}

template <class T, class A>
void forward_impl(const Dims& d, const T* k, const T* v, T* y, const A* w, const A* u, A* carry) {
  using V = PackOf<A>;
  const int W = PackWidth<A>::value;
  for_items(d, W, true, [&](i64 b, int j, i64 c0, int lanes) {
    item_summary<false, 3, V>(d, k, v, w, carry, b, j, c0, lanes);
  });
  for_items(d, W, false, [&](i64 b, int, i64 c0, int lanes) {
    item_carry<false, 3, V>(d, w, carry, b, c0, lanes, true, !d.causal);
  });
  for_items(d, W, true, [&](i64 b, int j, i64 c0, int lanes) {
    State<V>* buf = scratch<V>(d.chunk_len);
    item_forward<3, V>(d, k, v, y, w, u, carry, b, j, c0, lanes, buf);
  });
}

template <class T, class A>
void backward_impl(const Dims& d, const T* k, const T* v, const T* g, T* gk, T* gv, const A* w,
                   const A* u, A* carry, A* pcarry, A* gwp, A* gup) {
  using V = PackOf<A>;
  const int W = PackWidth<A>::value;
  for_items(d, W, true, [&](i64 b, int j, i64 c0, int lanes) {
    item_summary<true, 5, V>(d, k, v, w, carry, b, j, c0, lanes);
  });
  for_items(d, W, false, [&](i64 b, int, i64 c0, int lanes) {
    item_carry<true, 5, V>(d, w, carry, b, c0, lanes, true, !d.causal);
  });
  for_items(d, W, true, [&](i64 b, int j, i64 c0, int lanes) {
    State<V>* buf = scratch<V>(d.chunk_len);
    item_backward_stats<V>(d, k, v, g, w, u, carry, pcarry, gwp, gup, b, j, c0, lanes, buf);
  });
  for_items(d, W, false, [&](i64 b, int, i64 c0, int lanes) {
    item_carry<false, 3, V>(d, w, pcarry, b, c0, lanes, !d.causal, true);
  });
  for_items(d, W, true, [&](i64 b, int j, i64 c0, int lanes) {
    State<V>* buf = scratch<V>(2 * (size_t)d.chunk_len);
    item_backward_kv<V>(d, k, v, g, gk, gv, w, u, carry, pcarry, b, j, c0, lanes, buf);
  });
}

}  // namespace

torch::Tensor bi_wkv_forward_cpu(const torch::Tensor& w, const torch::Tensor& u,
                                 const torch::Tensor& k, const torch::Tensor& v, int64_t chunk_len,
                                 bool causal) {
  check_inputs(w, u, k, v, chunk_len, /*cuda=*/false);
  Dims d = make_dims(k, chunk_len, causal);
  auto y = torch::empty_like(k);
  if (k.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, k.scalar_type(), "bi_wkv_forward_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    auto wa = w.to(c10::CppTypeToScalarType<A>::value).contiguous();
    auto ua = u.to(c10::CppTypeToScalarType<A>::value).contiguous();
    auto carry = torch::empty({d.B, d.nch, 2, 3, d.C}, k.options().dtype(wa.scalar_type()));
    forward_impl<scalar_t, A>(d, k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                              wa.data_ptr<A>(), ua.data_ptr<A>(), carry.data_ptr<A>());
  });
  return y;
}

std::vector<torch::Tensor> bi_wkv_backward_cpu(const torch::Tensor& w, const torch::Tensor& u,
                                               const torch::Tensor& k, const torch::Tensor& v,
                                               const torch::Tensor& gy, int64_t chunk_len,
                                               bool causal) {
  check_inputs(w, u, k, v, chunk_len, /*cuda=*/false);
  check_grad(gy, k);
  Dims d = make_dims(k, chunk_len, causal);
  auto gk = torch::empty_like(k);
  auto gv = torch::empty_like(v);
  torch::Tensor gw, gu;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, k.scalar_type(), "bi_wkv_backward_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    auto opt = k.options().dtype(c10::CppTypeToScalarType<A>::value);
    auto wa = w.to(opt.dtype()).contiguous();
    auto ua = u.to(opt.dtype()).contiguous();
    auto carry = torch::empty({d.B, d.nch, 2, 5, d.C}, opt);
    auto pcarry = torch::empty({d.B, d.nch, 2, 3, d.C}, opt);
    auto gwp = torch::zeros({d.B, d.nch, d.C}, opt);
    auto gup = torch::zeros({d.B, d.nch, d.C}, opt);
    if (k.numel() > 0) {
      auto g = gy.contiguous();
      backward_impl<scalar_t, A>(d, k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(),
                                 gk.data_ptr<scalar_t>(), gv.data_ptr<scalar_t>(), wa.data_ptr<A>(),
                                 ua.data_ptr<A>(), carry.data_ptr<A>(), pcarry.data_ptr<A>(),
                                 gwp.data_ptr<A>(), gup.data_ptr<A>());
    }
    gw = gwp.sum({0, 1}).to(w.scalar_type());
    gu = gup.sum({0, 1}).to(u.scalar_type());
  });
  return {gw, gu, gk, gv};
}

}  // namespace biwkv
