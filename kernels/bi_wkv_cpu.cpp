// CPU driver of the Bi-WKV op: at::parallel_for (torch's OpenMP pool, so torch.set_num_threads
// applies) over (batch, chunk, channel pack), SIMD across the channels of a pack. All
// arithmetic is in bi_wkv_core.h (shared with the CUDA kernel).
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
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


// ---------------------------------------------------------------------------------------
// Fast path of the forward pass (bidirectional, fp32 math), used per (chunk, pack) item
// where the chunk is short relative to the decay: chunk_len * |w| <= kFastBound and
// |u| <= kFastBound on every lane. The generic core keeps a running maximum exponent and
// rescales the sums at every token (an exp, two blends and extra multiplies per sum and
// token). Here every exponent in the chunk is taken relative to one per-chunk reference M
// (the largest of max k (+ u if u > 0) and the carries' exponents), so
//   - each token costs one exp, e_t = exp(k_t - M) <= 1, shared by both directions and by
//     the bonus term exp(u + k_t - M) = exp(u) e_t <= 1;
//   - the sums follow the plain recurrences a_{t+1} = lam a_t + e_t (v_t, 1) with
//     lam = exp(-w) (and b_{t-1} likewise), no rescaling.
// Safety: a sum grows at most by lam^len <= exp(kFastBound) and the denominator is at least
// exp(-kFastBound) relative to exp(M) (the token or carry that set M is seen by every token,
// decayed by at most exp(-len |w|), or is the token's own bonus with exp(u)), so nothing
// overflows, the denominator is never 0, and terms that underflow (< exp(-87) relative to
// M) are negligible. Accuracy: lam^n picks up ~n roundings (n < chunk_len), which is why the
// CPU default chunk_len is small (32); the carries between chunks still go through the
// exact exponent arithmetic of the core (carry_scan).
// The summaries use the same scheme and are then normalised to the core's State format
// (o = the largest term's exponent), so fast and generic items can be mixed.
// ---------------------------------------------------------------------------------------
constexpr float kFastBound = 20.0f;
constexpr int kFastMaxChunk = 64;  // bounds the lam^n rounding (~n * 6e-8 relative)
typedef Pack<float, 16> PF;

// Whether the fast path may run for the pack at c0 (lanes channels), and lam = exp(-w).
inline bool fast_setup(const Dims& d, const float* w, const float* u, i64 c0, int lanes, PF& lam) {
  if (d.causal) return false;  // causal: a token does not see the chunk's largest term
  if (d.chunk_len > kFastMaxChunk) return false;
  for (int i = 0; i < 16; ++i) {
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

// Largest k of a chunk.
template <class T> inline PF chunk_kmax(const T* k, i64 ts, int len, int lanes) {
  PF K(Empty<float>::value);
  for (int t = 0; t < len; ++t) K = vmax(K, Io<PF>::ld(k + t * ts, lanes));
  return K;
}

// Summaries of one chunk (as chunk_summary, non-causal): left = sum_t exp(t w + k_t) (v_t, 1),
// right = sum_t exp(-t w + k_t) (v_t, 1), in the frame of token 0.
template <class T>
void fast_summary(const T* k, const T* v, i64 ts, int len, PF w, PF lam, int lanes,
                  State<PF>& left, State<PF>& right, PF* buf /* 2 * len packs */) {
  // K = max k; ml, mr: the largest exponents k_t +- t w (for the normalisation).
  PF K(Empty<float>::value), ml = K, mr = K;
  for (int t = 0; t < len; ++t) {
    PF kt = Io<PF>::ld(k + t * ts, lanes), tw = PF(float(t)) * w;
    K = vmax(K, kt);
    ml = vmax(ml, kt + tw);
    mr = vmax(mr, kt - tw);
  }
  // Horner sums with e_t = exp(k_t - K) <= 1: forward, ln = sum_t lam^(len-1-t) e_t X_t
  // (= left * exp(-(len-1) w - K)); backward, rn = sum_t lam^t e_t X_t (= right * exp(-K)).
  PF ln(0.0f), ld(0.0f), rn(0.0f), rd(0.0f);
  for (int t = 0; t < len; ++t) {  // e_t and e_t v_t are kept for the backward sweep
    PF kt = Io<PF>::ld(k + t * ts, lanes), vt = Io<PF>::ld(v + t * ts, lanes);
    PF e = ex(kt - K), ev = e * vt;
    buf[2 * t] = e;
    buf[2 * t + 1] = ev;
    ln = lam * ln + ev;
    ld = lam * ld + e;
  }
  for (int t = len - 1; t >= 0; --t) {
    rn = lam * rn + buf[2 * t + 1];
    rd = lam * rd + buf[2 * t];
  }
  // left = exp(K + (len-1) w) (ln, ld) = exp(ml) * exp(K + (len-1) w - ml) (ln, ld).
  PF sl = ex(K + PF(float(len - 1)) * w - ml), sr = ex(K - mr);
  left.n = ln * sl; left.d = ld * sl; left.o = ml;
  right.n = rn * sr; right.d = rd * sr; right.o = mr;
  left.dn = left.dd = right.dn = right.dd = PF(0.0f);
}

// Forward walk of one chunk (as chunk_forward, non-causal). buf: 3 * len packs.
template <class T>
void fast_forward(const T* k, const T* v, T* y, i64 ts, int len, PF w, PF u, PF lam, PF s0,
                  int lanes, State<PF> Lg, State<PF> Rg, PF* buf) {
  State<PF> A0 = left_at<false>(left_into_chunk<false>(Lg, w, s0), w, 0);
  State<PF> Bl = right_at<false>(right_into_chunk<false>(Rg, w, s0), w, len - 1);
  PF M = vmax(vmax(chunk_kmax(k, ts, len, lanes) + vmax(u, PF(0.0f)), A0.o), Bl.o);
  PF eu = ex(u);
  PF sa = ex(A0.o - M), sb = ex(Bl.o - M);
  PF an = A0.n * sa, ad = A0.d * sa, bn = Bl.n * sb, bd = Bl.d * sb;
  for (int t = len - 1; t >= 0; --t) {  // right sums b_t and e_t, stored per token
    PF kt = Io<PF>::ld(k + t * ts, lanes), vt = Io<PF>::ld(v + t * ts, lanes);
    PF e = ex(kt - M);
    buf[3 * t] = bn;
    buf[3 * t + 1] = bd;
    buf[3 * t + 2] = e;
    bn = lam * bn + e * vt;
    bd = lam * bd + e;
  }
  for (int t = 0; t < len; ++t) {
    PF vt = Io<PF>::ld(v + t * ts, lanes);
    PF e = buf[3 * t + 2], be = eu * e;
    PF num = an + buf[3 * t] + be * vt;
    PF den = ad + buf[3 * t + 1] + be;
    Io<PF>::st(y + t * ts, num / den, lanes);
    an = lam * an + e * vt;
    ad = lam * ad + e;
  }
}

template <class T, class A>
void forward_impl(const Dims& d, const T* k, const T* v, T* y, const A* w, const A* u, A* carry) {
  using V = PackOf<A>;
  const int W = PackWidth<A>::value;
  for_items(d, W, true, [&](i64 b, int j, i64 c0, int lanes) {
    if constexpr (std::is_same<A, float>::value) {
      PF lam;
      if (fast_setup(d, w, u, c0, lanes, lam)) {
        State<PF> left, right;
        i64 o = d.token0(b, j, c0);
        PF* buf = reinterpret_cast<PF*>(scratch<PF>(d.chunk_len));  // 5 packs per State >= 2
        fast_summary(k + o, v + o, d.C, d.chunk_size(j), Io<PF>::ld(w + c0, lanes), lam, lanes,
                     left, right, buf);
        CarryView<PF, A, 3> cv = carry_view<PF, A, 3>(d, carry, b, c0, lanes);
        cv.store(j, 0, left);
        cv.store(j, 1, right);
        return;
      }
    }
    item_summary<false, 3, V>(d, k, v, w, carry, b, j, c0, lanes);
  });
  for_items(d, W, false, [&](i64 b, int, i64 c0, int lanes) {
    item_carry<false, 3, V>(d, w, carry, b, c0, lanes, true, !d.causal);
  });
  for_items(d, W, true, [&](i64 b, int j, i64 c0, int lanes) {
    if constexpr (std::is_same<A, float>::value) {
      PF lam;
      if (fast_setup(d, w, u, c0, lanes, lam)) {
        CarryView<PF, A, 3> cv = carry_view<PF, A, 3>(d, carry, b, c0, lanes);
        i64 o = d.token0(b, j, c0);
        PF* buf = reinterpret_cast<PF*>(scratch<PF>(d.chunk_len));  // 5 packs per State >= 3
        fast_forward(k + o, v + o, y + o, d.C, d.chunk_size(j), Io<PF>::ld(w + c0, lanes),
                     Io<PF>::ld(u + c0, lanes), lam, PF(d.chunk_start(j)), lanes, cv.load(j, 0),
                     cv.load(j, 1), buf);
        return;
      }
    }
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
