// CPU driver of the Bi-WKV op: at::parallel_for (torch's OpenMP pool, so torch.set_num_threads
// applies) over (batch, chunk, channel pack) work items, SIMD across the channels of a pack.
// Each item runs either the core's walk (bi_wkv_core.h on Pack<A, kPackWidth<A>>, "general
// path", the arithmetic the CUDA kernel runs) or, where its bounds hold, the fast path of
// bi_wkv_cpu_fast.h (one exp per token). Both read and write the core's State summaries, so
// they mix freely in one call; the carries between chunks always go through the core's
// carry_scan. This file only plans, schedules, allocates and dispatches.
#include <ATen/Parallel.h>
#include <algorithm>
#include <type_traits>
#include <vector>

#include "bi_wkv.h"
#include "bi_wkv_core.h"
#include "bi_wkv_cpu_fast.h"
#include "bi_wkv_cpu_pack.h"

namespace biwkv {
namespace {

using fast::PF;

// Per-thread scratch of at least n elements, reused across work items and calls (allocating
// it per item cost more than a short chunk walk).
template <class X> X* scratch(size_t n) {
  thread_local std::vector<X> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

PF* fast_scratch(const Dims& d) { return scratch<PF>((size_t)fast::kScratchPerToken * d.chunk_len); }

// Runs fn(b, j, c0, lanes, pf) for every (batch, chunk, pack of W channels) in parallel
// (per_chunk = false: one item per (batch, pack), j = 0). Items run chunk by chunk, the packs
// of a chunk in order, so a thread's items of one chunk read a contiguous block of rows.
// pf: element offset from this item's first token to its share of the next chunk's block
// (pack p: elements [p chunk_len W, (p + 1) chunk_len W) of it), which the fast items
// prefetch one 64-byte line per token (fast::prefetch_row): the next block is then fetched
// in address order, which the hardware prefetchers extend, while the items' own walks go
// down pack columns C elements apart.
template <class F> void for_items(const Dims& d, int W, bool per_chunk, F fn) {
  const i64 npack = (d.C + W - 1) / W;
  const i64 nch = per_chunk ? d.nch : 1;
  const i64 n = d.B * nch * npack;
  at::parallel_for(0, n, 1, [&](i64 begin, i64 end) {
    for (i64 it = begin; it < end; ++it) {
      const i64 p = it % npack;
      const i64 bj = it / npack;
      const i64 b = bj / nch, c0 = p * W;
      const int j = (int)(bj % nch);
      const int lanes = (int)std::min<i64>(W, d.C - c0);
      const i64 next = bj + 1 < d.B * nch ? d.token0((bj + 1) / nch, (int)((bj + 1) % nch), 0) : 0;
      const i64 pf = next + p * d.chunk_len * W - d.token0(b, j, c0);
      fn(b, j, c0, lanes, pf);
    }
  });
}

// Whether the item of the pack at channel c0 takes the fast path (fp32 math only; callers
// test that with `if constexpr`, since the fast items take float buffers).
bool fast_at(const fast::Plan& plan, i64 c0) { return plan.ok[c0 / fast::kLanes] != 0; }

// Phase 1 of both passes: the summary of every item into the carry buffer.
template <bool DW, int F, class T, class A>
void summaries(const Dims& d, const T* k, const T* v, const A* w, A* carry, const fast::Plan& plan) {
  using V = PackOf<A>;
  for_items(d, kPackWidth<A>, true, [&](i64 b, int j, i64 c0, int lanes, i64 pf) {
    if constexpr (std::is_same<A, float>::value) {
      if (fast_at(plan, c0)) {
        fast::item_summary<DW, F>(d, plan, k, v, w, carry, b, j, c0, lanes, fast_scratch(d), pf);
        return;
      }
    }
    item_summary<DW, F, V>(d, k, v, w, carry, b, j, c0, lanes);
  });
}

template <class T, class A>
void forward_impl(const Dims& d, const T* k, const T* v, T* y, const A* w, const A* u, A* carry) {
  using V = PackOf<A>;
  const int W = kPackWidth<A>;
  const fast::Plan plan = fast::make_plan(d, w, u);
  summaries<false, kFieldsPlain>(d, k, v, w, carry, plan);
  for_items(d, W, false, [&](i64 b, int, i64 c0, int lanes, i64) {
    item_carry<false, kFieldsPlain, V>(d, w, carry, b, c0, lanes, true, !d.causal);
  });
  for_items(d, W, true, [&](i64 b, int j, i64 c0, int lanes, i64 pf) {
    if constexpr (std::is_same<A, float>::value) {
      if (fast_at(plan, c0)) {
        fast::item_forward(d, plan, k, v, y, w, u, carry, b, j, c0, lanes, fast_scratch(d), pf);
        return;
      }
    }
    item_forward<kFieldsPlain, V>(d, k, v, y, w, u, carry, b, j, c0, lanes,
                                  scratch<State<V>>(d.chunk_len));
  });
}

template <class T, class A>
void backward_impl(const Dims& d, const T* k, const T* v, const T* g, T* gk, T* gv, const A* w,
                   const A* u, A* carry, A* pcarry, A* gwp, A* gup) {
  using V = PackOf<A>;
  const int W = kPackWidth<A>;
  const fast::Plan plan = fast::make_plan(d, w, u);
  summaries<true, kFieldsDW>(d, k, v, w, carry, plan);
  for_items(d, W, false, [&](i64 b, int, i64 c0, int lanes, i64) {
    item_carry<true, kFieldsDW, V>(d, w, carry, b, c0, lanes, true, !d.causal);
  });
  for_items(d, W, true, [&](i64 b, int j, i64 c0, int lanes, i64 pf) {
    if constexpr (std::is_same<A, float>::value) {
      if (fast_at(plan, c0)) {
        fast::item_backward_stats(d, plan, k, v, g, w, u, carry, pcarry, gwp, gup, b, j, c0, lanes,
                                  fast_scratch(d), pf);
        return;
      }
    }
    item_backward_stats<V>(d, k, v, g, w, u, carry, pcarry, gwp, gup, b, j, c0, lanes,
                           scratch<State<V>>(d.chunk_len));
  });
  for_items(d, W, false, [&](i64 b, int, i64 c0, int lanes, i64) {
    item_carry<false, kFieldsPlain, V>(d, w, pcarry, b, c0, lanes, !d.causal, true);
  });
  for_items(d, W, true, [&](i64 b, int j, i64 c0, int lanes, i64 pf) {
    if constexpr (std::is_same<A, float>::value) {
      if (fast_at(plan, c0) &&
          fast::item_backward_kv(d, plan, k, v, g, gk, gv, w, u, carry, pcarry, b, j, c0, lanes,
                                 fast_scratch(d), pf))
        return;
    }
    item_backward_kv<V>(d, k, v, g, gk, gv, w, u, carry, pcarry, b, j, c0, lanes,
                        scratch<State<V>>(2 * (size_t)d.chunk_len));
  });
}

}  // namespace

at::Tensor bi_wkv_forward_cpu(const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
                              const at::Tensor& v, int64_t chunk_len, bool causal) {
  check_inputs(w, u, k, v, chunk_len, /*cuda=*/false);
  Dims d = make_dims(k, chunk_len, causal);
  auto y = empty_output_like(k);
  if (k.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, k.scalar_type(), "bi_wkv_forward_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    auto opt = k.options().dtype(c10::CppTypeToScalarType<A>::value);
    auto wa = w.to(opt.dtype()).contiguous();
    auto ua = u.to(opt.dtype()).contiguous();
    auto carry = carry_buffer(d, kFieldsPlain, opt);
    forward_impl<scalar_t, A>(d, k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                              wa.data_ptr<A>(), ua.data_ptr<A>(), carry.data_ptr<A>());
  });
  return y;
}

std::vector<at::Tensor> bi_wkv_backward_cpu(const at::Tensor& w, const at::Tensor& u,
                                            const at::Tensor& k, const at::Tensor& v,
                                            const at::Tensor& gy, int64_t chunk_len, bool causal) {
  check_inputs(w, u, k, v, chunk_len, /*cuda=*/false);
  check_grad(gy, k);
  Dims d = make_dims(k, chunk_len, causal);
  auto gk = empty_output_like(k);
  auto gv = empty_output_like(v);
  at::Tensor gw, gu;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, k.scalar_type(), "bi_wkv_backward_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    auto opt = k.options().dtype(c10::CppTypeToScalarType<A>::value);
    auto wa = w.to(opt.dtype()).contiguous();
    auto ua = u.to(opt.dtype()).contiguous();
    auto gwp = partial_sums(d, opt);
    auto gup = partial_sums(d, opt);
    if (k.numel() > 0) {
      auto g = gy.contiguous();
      auto carry = carry_buffer(d, kFieldsDW, opt);
      auto pcarry = carry_buffer(d, kFieldsPlain, opt);
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

// Per pack of fast::kLanes channels: whether the CPU fast path runs for a call with these
// arguments (phase 5 may still fall back per item, see fast::backward_kv). For tests.
std::vector<bool> bi_wkv_cpu_fast_packs(const at::Tensor& w, const at::Tensor& u,
                                        const at::Tensor& k, int64_t chunk_len, bool causal) {
  check_inputs(w, u, k, k, chunk_len, /*cuda=*/false);
  const Dims d = make_dims(k, chunk_len, causal);
  if (at::toOpMathType(k.scalar_type()) != at::kFloat)
    return std::vector<bool>((d.C + fast::kLanes - 1) / fast::kLanes, false);
  auto wa = w.to(at::kFloat).contiguous();
  auto ua = u.to(at::kFloat).contiguous();
  const fast::Plan plan = fast::make_plan(d, wa.data_ptr<float>(), ua.data_ptr<float>());
  return std::vector<bool>(plan.ok.begin(), plan.ok.end());
}

}  // namespace biwkv
