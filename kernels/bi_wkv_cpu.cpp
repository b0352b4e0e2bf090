// CPU driver of the Bi-WKV op: at::parallel_for (torch's OpenMP pool, so torch.set_num_threads
// applies) over (batch, chunk, channel pack), SIMD across the channels of a pack. Items run
// either the numerical core of bi_wkv_core.h (shared with the CUDA kernel: the generic,
// fully stabilised path) or, where it is provably safe, the CPU-only fast path below (one
// exp per token); both produce the core's State summaries, so they mix freely in one call
// and the carries between chunks always go through the core's carry_scan.
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

// fast_setup for every channel pack, once per call (its per-pack double exp()s are not
// negligible beside a 32-token chunk walk, and every phase needs them). Non-float: none.
struct FastPlan {
  std::vector<PF> lam;
  std::vector<char> ok;
};
template <class A> FastPlan fast_plan(const Dims& d, const A* w, const A* u) {
  const i64 npack = (d.C + 15) / 16;
  FastPlan p;
  p.lam.resize(npack);
  p.ok.assign(npack, 0);
  if constexpr (std::is_same<A, float>::value) {
    for (i64 i = 0; i < npack; ++i)
      p.ok[i] = fast_setup(d, w, u, i * 16, (int)std::min<i64>(16, d.C - i * 16), p.lam[i]);
  }
  return p;
}

// What a fast-path call needs of one work item (batch b, chunk j, pack at channel c0): the
// offset of its first token, its length and first position, and the pack's w, u and exp(-w).
struct FastItem {
  i64 o;
  int n;
  PF t0, w, u;
  const PF* lam;
};
template <class A>
inline FastItem fast_item(const Dims& d, const FastPlan& plan, const A* w, const A* u, i64 b,
                          int j, i64 c0, int lanes) {
  return FastItem{d.token0(b, j, c0), (int)d.chunk_size(j), PF(d.chunk_start(j)),
                  Io<PF>::ld(w + c0, lanes), Io<PF>::ld(u + c0, lanes), &plan.lam[c0 / 16]};
}

// Largest k of a chunk.
template <class T> inline PF chunk_kmax(const T* k, i64 ts, int len, int lanes) {
  PF K(Empty<float>::value);
  for (int t = 0; t < len; ++t) K = vmax(K, Io<PF>::ld(k + t * ts, lanes));
  return K;
}

// Summaries of one chunk (as chunk_summary, non-causal): left = sum_t exp(t w + k_t) (v_t, 1),
// right = sum_t exp(-t w + k_t) (v_t, 1), in the frame of token 0. With DW also their
// w-derivatives: d left/dw = sum_t t exp(t w + k_t) (v_t, 1), d right/dw = -sum_t t (...).
template <bool DW, class T>
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
  // The derivative sums weight every term by t (the same Horner recurrences on t e_t X_t).
  PF ln(0.0f), ld(0.0f), rn(0.0f), rd(0.0f);
  PF lnd(0.0f), ldd(0.0f), rnd(0.0f), rdd(0.0f);
  for (int t = 0; t < len; ++t) {  // e_t and e_t v_t are kept for the backward sweep
    PF kt = Io<PF>::ld(k + t * ts, lanes), vt = Io<PF>::ld(v + t * ts, lanes);
    PF e = ex(kt - K), ev = e * vt;
    buf[2 * t] = e;
    buf[2 * t + 1] = ev;
    ln = lam * ln + ev;
    ld = lam * ld + e;
    if (DW) {
      PF tf = PF(float(t));
      lnd = lam * lnd + tf * ev;
      ldd = lam * ldd + tf * e;
    }
  }
  for (int t = len - 1; t >= 0; --t) {
    rn = lam * rn + buf[2 * t + 1];
    rd = lam * rd + buf[2 * t];
    if (DW) {
      PF tf = PF(float(t));
      rnd = lam * rnd + tf * buf[2 * t + 1];
      rdd = lam * rdd + tf * buf[2 * t];
    }
  }
  // left = exp(K + (len-1) w) (ln, ld) = exp(ml) * exp(K + (len-1) w - ml) (ln, ld).
  PF sl = ex(K + PF(float(len - 1)) * w - ml), sr = ex(K - mr);
  left.n = ln * sl; left.d = ld * sl; left.o = ml;
  right.n = rn * sr; right.d = rd * sr; right.o = mr;
  if (DW) {
    left.dn = lnd * sl; left.dd = ldd * sl;
    right.dn = -(rnd * sr); right.dd = -(rdd * sr);
  } else {
    left.dn = left.dd = right.dn = right.dd = PF(0.0f);
  }
}

// Chunk reference M of fast_forward / the backward passes, from the chunk's largest k (K)
// and the entering sums A0 (left sum at token 0) and Bl (right sum at token len-1).
inline PF fast_ref(PF K, PF u, const State<PF>& A0, const State<PF>& Bl) {
  return vmax(vmax(K + vmax(u, PF(0.0f)), A0.o), Bl.o);
}

// The right-to-left sweep shared by fast_forward and fast_backward_kv: with every sum
// relative to exp(M), stores the right sum b_t (n, d) and e_t = exp(k_t - M) of every token
// at buf[stride * t + 0, 1, 2], and returns in (an, ad) the left sum entering token 0.
template <class T>
inline void fast_right_sweep(const T* k, const T* v, i64 ts, int len, PF lam, PF M,
                             const State<PF>& A0, const State<PF>& Bl, int lanes, PF* buf,
                             int stride, PF& an, PF& ad) {
  PF sa = ex(A0.o - M), sb = ex(Bl.o - M);
  an = A0.n * sa;
  ad = A0.d * sa;
  PF bn = Bl.n * sb, bd = Bl.d * sb;
  for (int t = len - 1; t >= 0; --t) {
    PF kt = Io<PF>::ld(k + t * ts, lanes), vt = Io<PF>::ld(v + t * ts, lanes);
    PF e = ex(kt - M);
    PF* q = buf + stride * t;
    q[0] = bn; q[1] = bd; q[2] = e;
    bn = lam * bn + e * vt;
    bd = lam * bd + e;
  }
}

// Forward walk of one chunk (as chunk_forward, non-causal). buf: 3 * len packs.
template <class T>
void fast_forward(const T* k, const T* v, T* y, i64 ts, int len, PF w, PF u, PF lam, PF s0,
                  int lanes, State<PF> Lg, State<PF> Rg, PF* buf) {
  State<PF> A0 = left_at<false>(left_into_chunk<false>(Lg, w, s0), w, 0);
  State<PF> Bl = right_at<false>(right_into_chunk<false>(Rg, w, s0), w, len - 1);
  PF M = fast_ref(chunk_kmax(k, ts, len, lanes), u, A0, Bl);
  PF eu = ex(u);
  PF an, ad;
  fast_right_sweep(k, v, ts, len, lam, M, A0, Bl, lanes, buf, 3, an, ad);
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

// ---------------------------------------------------------------------------------------
// Fast path of the backward pass, under the same conditions as the forward one (fast_setup).
// Within a chunk all forward quantities are again measured relative to the one reference
// exp(M) of fast_forward (M = max(max k + max(u, 0), the carries' exponents)), so the
// output denominators satisfy exp(-kFastBound) <= den <= len exp(kFastBound) relative to
// exp(M) (same argument as the forward), and:
//  - the w-derivatives of the forward sums follow from a_{t+1} = lam a_t + e_t X_t as
//    da_{t+1} = lam (da_t - a_t) (and db_{t-1} = lam (db_t - b_t) on the right) for the
//    in-chunk terms; the carried terms use lam^dist (X' - dist X) (see fast_backward_stats);
//  - the token terms of the backward scans, p_t = g_t / D_t = (g_t / den_t) exp(-M), all
//    share the exponent -M, so the chunk's scan summaries are plain sums of a_t = g_t/den_t
//    weighted by lam^(len-1-t) (left, Horner) or lam^t (right, running power); both weights
//    stay within exp(+-kFastBound), and the summaries are stored as State with o = the
//    common exponent (the carry scan merges States of any o exactly as before).
// Each token costs one exp (e_t) in the stats pass and two in the gk/gv pass (e_t and the
// final factor exp(k_t + Q), see fast_backward_kv).
// ---------------------------------------------------------------------------------------

// As chunk_backward_stats (non-causal): gw/gu partials of the chunk and the backward-scan
// summaries pleft, pright. Lg, Rg: forward carries with w-derivatives (global frame).
// buf: 5 * len packs.
template <class T>
void fast_backward_stats(const T* k, const T* v, const T* g, i64 ts, int len, PF w, PF u, PF lam,
                         PF s0, int lanes, State<PF> Lg, State<PF> Rg, PF* buf, PF& gw, PF& gu,
                         State<PF>& pleft, State<PF>& pright) {
  State<PF> A0 = left_at<true>(left_into_chunk<true>(Lg, w, s0), w, 0);
  State<PF> Bl = right_at<true>(right_into_chunk<true>(Rg, w, s0), w, len - 1);
  PF M = fast_ref(chunk_kmax(k, ts, len, lanes), u, A0, Bl);
  PF eu = ex(u);
  PF sa = ex(A0.o - M), sb = ex(Bl.o - M);
  // The sums are split into the carried part (the sums entering the chunk, decayed by
  // lam^dist, a common factor of value and derivative) and the in-chunk part (plain
  // recurrences). The carried derivatives are T-sized (their terms are weighted by the
  // distance from far tokens) while gw needs the small difference dn - y dd, so they must
  // not pick up a rounding per token: they are formed per token as lam^dist (X' - dist X)
  // (the generic walk's one-rounding re-anchoring); only the small in-chunk derivatives run
  // through the recurrence da_{t+1} = lam (da_t - a_t).
  PF An = A0.n * sa, Ad = A0.d * sa, Adn = A0.dn * sa, Add = A0.dd * sa;
  PF Bn = Bl.n * sb, Bd = Bl.d * sb, Bdn = Bl.dn * sb, Bdd = Bl.dd * sb;
  PF bn(0.0f), bd(0.0f), bdn(0.0f), bdd(0.0f), pw(1.0f);  // in-chunk right sums; pw = lam^dist
  for (int t = len - 1; t >= 0; --t) {  // right sums b_t, their derivatives and e_t, per token
    PF kt = Io<PF>::ld(k + t * ts, lanes), vt = Io<PF>::ld(v + t * ts, lanes);
    PF e = ex(kt - M);
    PF dist = PF(float(len - 1 - t));
    PF* q = buf + 5 * t;
    q[0] = pw * Bn + bn;
    q[1] = pw * Bd + bd;
    q[2] = pw * (Bdn - dist * Bn) + bdn;
    q[3] = pw * (Bdd - dist * Bd) + bdd;
    q[4] = e;
    bdn = lam * (bdn - bn);
    bdd = lam * (bdd - bd);
    bn = lam * bn + e * vt;
    bd = lam * bd + e;
    pw = pw * lam;
  }
  PF gwa(0.0f), gua(0.0f);
  PF an(0.0f), ad(0.0f), adn(0.0f), add(0.0f);  // in-chunk left sums
  PF pln(0.0f), pld(0.0f), prn(0.0f), prd(0.0f);
  pw = PF(1.0f);  // lam^t
  for (int t = 0; t < len; ++t) {
    PF vt = Io<PF>::ld(v + t * ts, lanes), gt = Io<PF>::ld(g + t * ts, lanes);
    const PF* q = buf + 5 * t;
    PF tf = PF(float(t));
    PF Ln = pw * An + an, Ld = pw * Ad + ad;
    PF Ldn = pw * (Adn - tf * An) + adn, Ldd = pw * (Add - tf * Ad) + add;
    PF e = q[4], be = eu * e;
    PF num = Ln + q[0] + be * vt;
    PF den = Ld + q[1] + be;
    PF y = num / den, a = gt / den, ay = a * y;
    gwa = gwa + a * ((Ldn - y * Ldd) + (q[2] - y * q[3]));
    gua = gua + a * (vt - y) * be;
    pln = lam * pln + a;  // = sum_t lam^(len-1-t) a_t (.., a_t y_t) at the end
    pld = lam * pld + ay;
    prn = prn + pw * a;   // = sum_t lam^t a_t (.., a_t y_t)
    prd = prd + pw * ay;
    pw = pw * lam;
    adn = lam * (adn - an);
    add = lam * (add - ad);
    an = lam * an + e * vt;
    ad = lam * ad + e;
  }
  gw = gwa;
  gu = gua;
  // pleft = sum_t exp(t w) p_t (frame of token 0) = exp((len-1) w - M) * (pln, pld);
  // pright = sum_t exp(-t w) p_t = exp(-M) * (prn, prd).
  pleft.n = pln; pleft.d = pld; pleft.o = PF(float(len - 1)) * w - M;
  pright.n = prn; pright.d = prd; pright.o = -M;
  pleft.dn = pleft.dd = pright.dn = pright.dd = PF(0.0f);
}

// Bound on k_t + Q in fast_backward_kv (see there); items above it take the generic path.
constexpr float kFastKvBound = 40.0f;

// As chunk_backward_kv (non-causal): gk, gv of the chunk from the forward carries (Lg, Rg)
// and the backward-scan carries (PLg, PRg). The in-chunk terms p_t = a_t exp(-M) and the
// scan carries entering the chunk (exponents PL0.o, PRl.o) are all measured relative to
// Q = max(-M, PL0.o, PRl.o) (each factor exp(. - Q) <= 1), so
//   gv_t = exp(k_t + Q) * S_t,  S_t = exp(u) a'_t + PL'_t + PR'_t  (primes: relative to Q),
// and the scans are again plain lam recurrences. exp(k_t + Q) is finite when k_t + Q is
// bounded; it is (k_t - M <= 0, and a carry's exponent is at most about -k_t plus a few
// kFastBound, since the chunk that produced it saw token t in its own reference), but the
// driver checks max k + Q <= kFastKvBound per item and otherwise returns false (nothing
// written) so that the generic walk runs instead. buf: 5 * len packs.
template <class T>
bool fast_backward_kv(const T* k, const T* v, const T* g, T* gk, T* gv, i64 ts, int len, PF w,
                      PF u, PF lam, PF s0, int lanes, State<PF> Lg, State<PF> Rg, State<PF> PLg,
                      State<PF> PRg, PF* buf) {
  State<PF> A0 = left_at<false>(left_into_chunk<false>(Lg, w, s0), w, 0);
  State<PF> Bl = right_at<false>(right_into_chunk<false>(Rg, w, s0), w, len - 1);
  State<PF> PL0 = left_at<false>(left_into_chunk<false>(PLg, w, s0), w, 0);
  State<PF> PRl = right_at<false>(right_into_chunk<false>(PRg, w, s0), w, len - 1);
  PF K = chunk_kmax(k, ts, len, lanes);
  PF M = fast_ref(K, u, A0, Bl);
  PF Q = vmax(vmax(-M, PL0.o), PRl.o);
  PF KQ = K + Q;
  for (int i = 0; i < lanes; ++i)
    if (!(KQ.x[i] <= kFastKvBound)) return false;
  PF eu = ex(u);
  PF an, ad;
  fast_right_sweep(k, v, ts, len, lam, M, A0, Bl, lanes, buf, 5, an, ad);
  PF cM = ex(-M - Q), cL = ex(PL0.o - Q), cR = ex(PRl.o - Q);
  PF pln = PL0.n * cL, pld = PL0.d * cL;
  for (int t = 0; t < len; ++t) {  // y_t, the terms a'_t (.., y_t) and the left scan PL'_t
    PF vt = Io<PF>::ld(v + t * ts, lanes), gt = Io<PF>::ld(g + t * ts, lanes);
    PF* q = buf + 5 * t;
    PF e = q[2], be = eu * e;
    PF num = an + q[0] + be * vt;
    PF den = ad + q[1] + be;
    PF y = num / den, a = (gt / den) * cM, ay = a * y;
    q[0] = a; q[1] = ay; q[2] = pln; q[3] = pld;
    pln = lam * pln + a;
    pld = lam * pld + ay;
    an = lam * an + e * vt;
    ad = lam * ad + e;
  }
  PF prn = PRl.n * cR, prd = PRl.d * cR;
  for (int t = len - 1; t >= 0; --t) {
    PF kt = Io<PF>::ld(k + t * ts, lanes), vt = Io<PF>::ld(v + t * ts, lanes);
    const PF* q = buf + 5 * t;
    PF scale = ex(kt + Q);
    PF gvt = (eu * q[0] + q[2] + prn) * scale;
    PF sbt = (eu * q[1] + q[3] + prd) * scale;
    Io<PF>::st(gv + t * ts, gvt, lanes);
    Io<PF>::st(gk + t * ts, vt * gvt - sbt, lanes);
    prn = lam * prn + q[0];
    prd = lam * prd + q[1];
  }
  return true;
}

// Phase 1 of both passes: the summary of every (batch, chunk, pack) item into the carry
// buffer (F fields per State; DW: with w-derivatives), by the fast path where it is planned.
template <bool DW, int F, class T, class A>
void summaries(const Dims& d, const T* k, const T* v, const A* w, A* carry, const FastPlan& plan) {
  using V = PackOf<A>;
  for_items(d, PackWidth<A>::value, true, [&](i64 b, int j, i64 c0, int lanes) {
    if constexpr (std::is_same<A, float>::value) {
      if (plan.ok[c0 / 16]) {
        State<PF> left, right;
        i64 o = d.token0(b, j, c0);
        PF* buf = reinterpret_cast<PF*>(scratch<PF>(d.chunk_len));  // 5 packs per State >= 2
        fast_summary<DW>(k + o, v + o, d.C, d.chunk_size(j), Io<PF>::ld(w + c0, lanes),
                         plan.lam[c0 / 16], lanes, left, right, buf);
        CarryView<PF, A, F> cv = carry_view<PF, A, F>(d, carry, b, c0, lanes);
        cv.store(j, 0, left);
        cv.store(j, 1, right);
        return;
      }
    }
    item_summary<DW, F, V>(d, k, v, w, carry, b, j, c0, lanes);
  });
}

template <class T, class A>
void forward_impl(const Dims& d, const T* k, const T* v, T* y, const A* w, const A* u, A* carry) {
  using V = PackOf<A>;
  const int W = PackWidth<A>::value;
  const FastPlan plan = fast_plan(d, w, u);
  summaries<false, 3>(d, k, v, w, carry, plan);
  for_items(d, W, false, [&](i64 b, int, i64 c0, int lanes) {
    item_carry<false, 3, V>(d, w, carry, b, c0, lanes, true, !d.causal);
  });
  for_items(d, W, true, [&](i64 b, int j, i64 c0, int lanes) {
    if constexpr (std::is_same<A, float>::value) {
      if (plan.ok[c0 / 16]) {
        const FastItem f = fast_item(d, plan, w, u, b, j, c0, lanes);
        CarryView<PF, A, 3> cv = carry_view<PF, A, 3>(d, carry, b, c0, lanes);
        PF* buf = reinterpret_cast<PF*>(scratch<PF>(d.chunk_len));  // 5 packs per State >= 3
        fast_forward(k + f.o, v + f.o, y + f.o, d.C, f.n, f.w, f.u, *f.lam, f.t0, lanes,
                     cv.load(j, 0), cv.load(j, 1), buf);
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
  const FastPlan plan = fast_plan(d, w, u);
  summaries<true, 5>(d, k, v, w, carry, plan);
  for_items(d, W, false, [&](i64 b, int, i64 c0, int lanes) {
    item_carry<true, 5, V>(d, w, carry, b, c0, lanes, true, !d.causal);
  });
  for_items(d, W, true, [&](i64 b, int j, i64 c0, int lanes) {
    if constexpr (std::is_same<A, float>::value) {
      if (plan.ok[c0 / 16]) {
        const FastItem f = fast_item(d, plan, w, u, b, j, c0, lanes);
        CarryView<PF, A, 5> cv = carry_view<PF, A, 5>(d, carry, b, c0, lanes);
        CarryView<PF, A, 3> pv = carry_view<PF, A, 3>(d, pcarry, b, c0, lanes);
        PF* buf = reinterpret_cast<PF*>(scratch<PF>(d.chunk_len));  // 5 packs per State
        PF gw, gu;
        State<PF> pl, pr;
        fast_backward_stats(k + f.o, v + f.o, g + f.o, d.C, f.n, f.w, f.u, *f.lam, f.t0, lanes,
                            cv.load(j, 0), cv.load(j, 1), buf, gw, gu, pl, pr);
        pv.store(j, 0, pl);
        pv.store(j, 1, pr);
        i64 q = (b * d.nch + j) * d.C + c0;
        Io<PF>::st(gwp + q, gw, lanes);
        Io<PF>::st(gup + q, gu, lanes);
        return;
      }
    }
    State<V>* buf = scratch<V>(d.chunk_len);
    item_backward_stats<V>(d, k, v, g, w, u, carry, pcarry, gwp, gup, b, j, c0, lanes, buf);
  });
  for_items(d, W, false, [&](i64 b, int, i64 c0, int lanes) {
    item_carry<false, 3, V>(d, w, pcarry, b, c0, lanes, !d.causal, true);
  });
  for_items(d, W, true, [&](i64 b, int j, i64 c0, int lanes) {
    State<V>* buf = scratch<V>(2 * (size_t)d.chunk_len);
    if constexpr (std::is_same<A, float>::value) {
      if (plan.ok[c0 / 16]) {
        const FastItem f = fast_item(d, plan, w, u, b, j, c0, lanes);
        CarryView<PF, A, 5> cv = carry_view<PF, A, 5>(d, carry, b, c0, lanes);
        CarryView<PF, A, 3> pv = carry_view<PF, A, 3>(d, pcarry, b, c0, lanes);
        if (fast_backward_kv(k + f.o, v + f.o, g + f.o, gk + f.o, gv + f.o, d.C, f.n, f.w, f.u,
                             *f.lam, f.t0, lanes, cv.load(j, 0), cv.load(j, 1), pv.load(j, 0),
                             pv.load(j, 1), reinterpret_cast<PF*>(buf)))
          return;
      }
    }
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
