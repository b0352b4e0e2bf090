// CPU driver of the Bi-WKV op: at::parallel_for (torch's OpenMP pool, so torch.set_num_threads
// applies) over (batch, chunk, channel pack) work items, SIMD across the channels of a pack
// (V = PackOf<A>, common/simd.h). Each item runs either the core's general walk (core.h, the
// arithmetic the CUDA kernel runs) or, where its bounds hold, the core's fast walk (one exp
// per token). Both read and write the core's State summaries, so they mix freely in one call;
// the carries between chunks always go through the core's carry_scan. This file only plans,
// schedules, allocates scratch and dispatches; the host side of the entry points is
// dispatch.h.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "bi_wkv/dispatch.h"
#include "common/simd.h"

namespace biwkv {
namespace {

using kernels::kPackWidth;
using kernels::PackOf;
typedef PackOf<float> PF;
constexpr int kLanes = kPackWidth<float>;  // channels per fast-walk decision

// Whether the fast walk may run for the pack at c0 (lanes channels), and lam = exp(-w).
bool pack_ok(const Dims& d, const float* w, const float* u, i64 c0, int lanes, PF& lam) {
  if (d.causal) return false;  // causal: a token does not see the chunk's largest term
  if (d.chunk_len > kFastMaxChunk) return false;
  for (int i = 0; i < kLanes; ++i) {
    if (i >= lanes) {
      lam.x[i] = 1.0f;
      continue;
    }
    if (!(std::fabs(w[c0 + i]) * float(d.chunk_len) <= kFastBound && std::fabs(u[c0 + i]) <= kFastBound))
      return false;
    lam.x[i] = (float)std::exp(-(double)w[c0 + i]);  // correctly rounded: it is raised to powers
  }
  return true;
}

// pack_ok for every channel pack, once per call (every phase needs it, and its double exp()s
// are not negligible beside a short chunk walk). ok[p]: pack p (channels p*kLanes..) is fast.
struct Plan {
  std::vector<PF> lam;
  std::vector<char> ok;
};
template <class A> Plan make_plan(const Dims& d, const A* w, const A* u) {
  const i64 npack = (d.C + kLanes - 1) / kLanes;
  Plan p;
  p.lam.resize(npack);
  p.ok.assign(npack, 0);
  if constexpr (std::is_same<A, float>::value) {
    for (i64 i = 0; i < npack; ++i)
      p.ok[i] = pack_ok(d, w, u, i * kLanes, (int)std::min<i64>(kLanes, d.C - i * kLanes), p.lam[i]);
  }
  return p;
}

// Whether the item of the pack at channel c0 takes the fast walk (fp32 math only; callers
// test that with `if constexpr`, since the fast items take float buffers), and its exp(-w).
bool fast_at(const Plan& plan, i64 c0) { return plan.ok[c0 / kLanes] != 0; }
const PF& lam_at(const Plan& plan, i64 c0) { return plan.lam[c0 / kLanes]; }

// Per-thread scratch of at least n elements, reused across work items and calls (allocating
// it per item cost more than a short chunk walk).
template <class X> X* scratch(size_t n) {
  thread_local std::vector<X> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

PF* fast_scratch(const Dims& d) { return scratch<PF>((size_t)kFastScratchPerToken * d.chunk_len); }

// Runs fn(b, j, c0, lanes, pf) for every (batch, chunk, pack of W channels) in parallel
// (per_chunk = false: one item per (batch, pack), j = 0). Items run chunk by chunk, the packs
// of a chunk in order, so a thread's items of one chunk read a contiguous block of rows.
// pf: element offset from this item's first token to its share of the next chunk's block
// (pack p: elements [p chunk_len W, (p + 1) chunk_len W) of it), which the fast items
// prefetch one 64-byte line per token (core.h: prefetch_row): the next block is then fetched
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

// The carry scans of one pass (phase 2, always the general walk's), per (batch, pack).
template <bool DW, int F, class A>
void carries(const Dims& d, const A* w, A* carry, bool left_dir, bool right_dir) {
  for_items(d, kPackWidth<A>, false, [&](i64 b, int, i64 c0, int lanes, i64) {
    item_carry<DW, F, PackOf<A>>(d, w, carry, b, c0, lanes, left_dir, right_dir);
  });
}

// Runs every (batch, chunk, pack) item: fast(b, j, c0, lanes, lam, buf, pf) where the plan
// puts the pack on the fast walk (fp32 math only; fast is a generic lambda, instantiated for
// float alone) and it returns true, general(b, j, c0, lanes) otherwise.
template <class A, class Fast, class General>
void chunk_items(const Dims& d, const Plan& plan, const Fast& fast, const General& general) {
  for_items(d, kPackWidth<A>, true, [&](i64 b, int j, i64 c0, int lanes, i64 pf) {
    if constexpr (std::is_same<A, float>::value) {
      if (fast_at(plan, c0) && fast(b, j, c0, lanes, lam_at(plan, c0), fast_scratch(d), pf)) return;
    }
    general(b, j, c0, lanes);
  });
}

// Phase 1 of both passes: the summary of every item into the carry buffer.
template <bool DW, int F, class T, class A>
void summaries(const Dims& d, const T* k, const T* v, const A* w, A* carry, const Plan& plan) {
  chunk_items<A>(
      d, plan,
      [&](i64 b, int j, i64 c0, int lanes, const auto& lam, auto* buf, i64 pf) {
        item_fast_summary<DW, F>(d, k, v, w, lam, carry, b, j, c0, lanes, buf, pf);
        return true;
      },
      [&](i64 b, int j, i64 c0, int lanes) {
        item_summary<DW, F, PackOf<A>>(d, k, v, w, carry, b, j, c0, lanes);
      });
}

// Phases 1 and 2 of a pass (DW, F: with w-derivatives, the backward's forward sums): the
// fast-walk plan of the call, the summaries and the carry scans (left, and right unless
// causal). Returns the plan for the later phases.
template <bool DW, int F, class T, class A>
Plan summaries_and_carries(const Dims& d, const T* k, const T* v, const A* w, const A* u, A* carry) {
  Plan plan = make_plan(d, w, u);
  summaries<DW, F>(d, k, v, w, carry, plan);
  carries<DW, F>(d, w, carry, true, !d.causal);
  return plan;
}

}  // namespace

template <> struct Driver<Device::kCpu> : kernels::CpuDriver {
  static Dims dims(const at::Tensor& k, int64_t chunk_len, bool causal) {
    return make_dims(k, chunk_len, causal);
  }

  template <class T, class A>
  static void forward(const Dims& d, const T* k, const T* v, T* y, const A* w, const A* u, A* carry) {
    using V = PackOf<A>;
    const Plan plan = summaries_and_carries<false, kFieldsPlain>(d, k, v, w, u, carry);
    chunk_items<A>(
        d, plan,
        [&](i64 b, int j, i64 c0, int lanes, const auto& lam, auto* buf, i64 pf) {
          item_fast_forward(d, k, v, y, w, u, lam, carry, b, j, c0, lanes, buf, pf);
          return true;
        },
        [&](i64 b, int j, i64 c0, int lanes) {
          item_forward<kFieldsPlain, V>(d, k, v, y, w, u, carry, b, j, c0, lanes,
                                        scratch<State<V>>(d.chunk_len));
        });
  }

  template <class T, class A>
  static void backward(const Dims& d, const T* k, const T* v, const T* g, T* gk, T* gv, const A* w,
                       const A* u, A* carry, A* pcarry, A* gwp, A* gup) {
    using V = PackOf<A>;
    const Plan plan = summaries_and_carries<true, kFieldsDW>(d, k, v, w, u, carry);
    chunk_items<A>(
        d, plan,
        [&](i64 b, int j, i64 c0, int lanes, const auto& lam, auto* buf, i64 pf) {
          item_fast_backward_stats(d, k, v, g, w, u, lam, carry, pcarry, gwp, gup, b, j, c0,
                                   lanes, buf, pf);
          return true;
        },
        [&](i64 b, int j, i64 c0, int lanes) {
          item_backward_stats<V>(d, k, v, g, w, u, carry, pcarry, gwp, gup, b, j, c0, lanes,
                                 scratch<State<V>>(d.chunk_len));
        });
    carries<false, kFieldsPlain>(d, w, pcarry, !d.causal, true);
    chunk_items<A>(
        d, plan,
        [&](i64 b, int j, i64 c0, int lanes, const auto& lam, auto* buf, i64 pf) {
          // false (nothing written): this item takes the general walk after all
          return item_fast_backward_kv(d, k, v, g, gk, gv, w, u, lam, carry, pcarry, b, j, c0,
                                       lanes, buf, pf);
        },
        [&](i64 b, int j, i64 c0, int lanes) {
          item_backward_kv<V>(d, k, v, g, gk, gv, w, u, carry, pcarry, b, j, c0, lanes,
                              scratch<State<V>>(2 * (size_t)d.chunk_len));
        });
  }
};

template struct Op<Device::kCpu>;

// Per pack of kLanes channels: whether the fast walk runs for a call with these arguments
// (phase 5 may still fall back per item, see fast_backward_kv). For tests.
std::vector<bool> cpu_fast_packs(const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
                                 int64_t chunk_len, bool causal) {
  check_inputs(w, u, k, k, chunk_len, /*cuda=*/false);
  const Dims d = make_dims(k, chunk_len, causal);
  if (at::toOpMathType(k.scalar_type()) != at::kFloat)
    return std::vector<bool>((d.C + kLanes - 1) / kLanes, false);
  auto wa = w.to(at::kFloat).contiguous();
  auto ua = u.to(at::kFloat).contiguous();
  const Plan plan = make_plan(d, wa.data_ptr<float>(), ua.data_ptr<float>());
  return std::vector<bool>(plan.ok.begin(), plan.ok.end());
}

}  // namespace biwkv
