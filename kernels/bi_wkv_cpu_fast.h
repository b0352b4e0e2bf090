// CPU fast path of the Bi-WKV op: one exp() per token instead of the core's running
// rescaling, for bidirectional calls with fp32 math (fp32/fp16/bf16 storage) whose chunks are
// short relative to the decay (chunk_len * |w| <= kFastBound, |u| <= kFastBound, decided per
// channel pack). Every exponent of a chunk is taken relative to one per-chunk reference, so
// the sums follow plain recurrences a_{t+1} = lam a_t + e_t (v_t, 1) with lam = exp(-w).
// Derivation, safety bounds and accuracy: kernels/README.md, "CPU fast path".
//
// Items of this path replace the core's chunk walks (phases 1, 3, 5 of bi_wkv_core.h) and
// produce / consume the core's State summaries in the same carry buffers, so fast and general
// items mix freely in one call; the carry scan between chunks is always the core's.
// Included only by the CPU driver (bi_wkv_cpu.cpp).
#pragma once
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "bi_wkv_core.h"
#include "bi_wkv_cpu_pack.h"

namespace biwkv {
namespace fast {

typedef PackOf<float> PF;
constexpr int kLanes = kPackWidth<float>;  // channels per fast-path decision

constexpr float kFastBound = 20.0f;  // on chunk_len * |w| and |u|
constexpr int kFastMaxChunk = 64;    // bounds the lam^n rounding (~n * 6e-8 relative)
constexpr float kFastKvBound = 40.0f;  // on max k + Q in item_backward_kv (else: general path)
// Scratch of one item, in packs per token of the chunk (the largest need, phases 3 and 5).
constexpr int kScratchPerToken = 5;

// Whether the fast path may run for the pack at c0 (lanes channels), and lam = exp(-w).
inline bool pack_ok(const Dims& d, const float* w, const float* u, i64 c0, int lanes, PF& lam) {
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

// What a fast-path walk needs of one item (batch b, chunk j, pack at c0): offset of its first
// token, length, first position, the pack's w, u and exp(-w).
struct Item {
  i64 o;
  int n;
  PF t0, w, u;
  const PF* lam;
};
inline Item make_item(const Dims& d, const Plan& plan, const float* w, const float* u, i64 b, int j,
                      i64 c0, int lanes) {
  return Item{d.token0(b, j, c0), (int)d.chunk_size(j), PF(d.chunk_start(j)),
              Io<PF>::ld(w + c0, lanes), Io<PF>::ld(u + c0, lanes), &plan.lam[c0 / kLanes]};
}

// Hint that the 64-byte line of k and v at p + pf is read soon (token t of an item passes
// p = its base + t kLanes: one line of the item's share of the next chunk's rows, see the
// CPU driver's for_items).
template <class T> BIWKV_PINL void prefetch_row(const T* k, const T* v, i64 pf) {
  __builtin_prefetch(k + pf);
  __builtin_prefetch(v + pf);
}

// Largest k of a chunk (the first read of the item's rows: prefetches the next item's).
template <class T> inline PF chunk_kmax(const T* k, const T* v, i64 ts, int len, int lanes, i64 pf) {
  // two running maxima (even / odd tokens): halves the chain of dependent max latencies
  PF K0(Empty<float>::value), K1 = K0;
  int t = 0;
  for (; t + 1 < len; t += 2) {
    prefetch_row(k + t * kLanes, v + t * kLanes, pf);
    prefetch_row(k + (t + 1) * kLanes, v + (t + 1) * kLanes, pf);
    K0 = vmax(K0, Io<PF>::ld(k + t * ts, lanes));
    K1 = vmax(K1, Io<PF>::ld(k + (t + 1) * ts, lanes));
  }
  if (t < len) {
    prefetch_row(k + t * kLanes, v + t * kLanes, pf);
    K0 = vmax(K0, Io<PF>::ld(k + t * ts, lanes));
  }
  return vmax(K0, K1);
}

// As chunk_summary (non-causal): left = sum_t exp(t w + k_t) (v_t, 1), right =
// sum_t exp(-t w + k_t) (v_t, 1) in the frame of token 0, normalised to the State format
// (o = the largest term's exponent). With DW also their w-derivatives. buf: 2 * len packs.
template <bool DW, class T>
void summary(const T* k, const T* v, i64 ts, int len, PF w, PF lam, int lanes, State<PF>& left,
             State<PF>& right, PF* buf, i64 pf) {
  // K = max k; ml, mr: the largest exponents k_t +- t w.
  PF K(Empty<float>::value), ml = K, mr = K;
  for (int t = 0; t < len; ++t) {
    prefetch_row(k + t * kLanes, v + t * kLanes, pf);
    PF kt = Io<PF>::ld(k + t * ts, lanes), tw = PF(float(t)) * w;
    K = vmax(K, kt);
    ml = vmax(ml, kt + tw);
    mr = vmax(mr, kt - tw);
  }
  // Horner sums of e_t X_t, e_t = exp(k_t - K): ln = sum lam^(len-1-t) e_t X_t (forward),
  // rn = sum lam^t e_t X_t (backward); the derivative sums weight each term by t.
  PF ln(0.0f), ld(0.0f), rn(0.0f), rd(0.0f);
  PF lnd(0.0f), ldd(0.0f), rnd(0.0f), rdd(0.0f);
  for (int t = 0; t < len; ++t) {  // e_t and e_t v_t are kept for the backward sweep
    PF kt = Io<PF>::ld(k + t * ts, lanes), vt = Io<PF>::ld(v + t * ts, lanes);
    PF e = ex_nonpositive(kt - K), ev = e * vt;
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

// The chunk reference M: the largest of max k (+ u if u > 0) and the entering sums'
// exponents (A0: left sum at token 0, Bl: right sum at token len-1).
inline PF reference(PF K, PF u, const State<PF>& A0, const State<PF>& Bl) {
  return vmax(vmax(K + vmax(u, PF(0.0f)), A0.o), Bl.o);
}

// Right-to-left sweep shared by forward and backward_kv: with every sum relative to exp(M),
// stores the right sum b_t (n, d) and e_t = exp(k_t - M) at buf[stride * t + 0, 1, 2], and
// returns in (an, ad) the left sum entering token 0.
template <class T>
inline void right_sweep(const T* k, const T* v, i64 ts, int len, PF lam, PF M, const State<PF>& A0,
                        const State<PF>& Bl, int lanes, PF* buf, int stride, PF& an, PF& ad) {
  PF sa = ex(A0.o - M), sb = ex(Bl.o - M);
  an = A0.n * sa;
  ad = A0.d * sa;
  PF bn = Bl.n * sb, bd = Bl.d * sb;
  for (int t = len - 1; t >= 0; --t) {
    PF kt = Io<PF>::ld(k + t * ts, lanes), vt = Io<PF>::ld(v + t * ts, lanes);
    PF e = ex_nonpositive(kt - M);
    PF* q = buf + stride * t;
    q[0] = bn; q[1] = bd; q[2] = e;
    bn = lam * bn + e * vt;
    bd = lam * bd + e;
  }
}

// As chunk_forward (non-causal). buf: 3 * len packs.
template <class T>
void forward(const T* k, const T* v, T* y, i64 ts, int len, PF w, PF u, PF lam, PF s0, int lanes,
             State<PF> Lg, State<PF> Rg, PF* buf, i64 pf) {
  State<PF> A0 = left_at<false>(left_into_chunk<false>(Lg, w, s0), w, 0);
  State<PF> Bl = right_at<false>(right_into_chunk<false>(Rg, w, s0), w, len - 1);
  for (int t = 0; t < len; ++t) __builtin_prefetch(y + t * kLanes + pf, 1);
  PF M = reference(chunk_kmax(k, v, ts, len, lanes, pf), u, A0, Bl);
  PF eu = ex(u);
  PF an, ad;
  right_sweep(k, v, ts, len, lam, M, A0, Bl, lanes, buf, 3, an, ad);
  for (int t = 0; t < len; ++t) {
    PF vt = Io<PF>::ld(v + t * ts, lanes);
    PF e = buf[3 * t + 2], be = eu * e;
    PF num = an + buf[3 * t] + be * vt;
    PF den = ad + buf[3 * t + 1] + be;
    Io<PF>::st(y + t * ts, num * reciprocal(den), lanes);
    an = lam * an + e * vt;
    ad = lam * ad + e;
  }
}

// As chunk_backward_stats (non-causal): gw/gu partials of the chunk and the backward-scan
// summaries pleft, pright (all token terms p_t share the exponent -M). Lg, Rg: forward
// carries with w-derivatives (global frame). buf: 5 * len packs.
template <class T>
void backward_stats(const T* k, const T* v, const T* g, i64 ts, int len, PF w, PF u, PF lam, PF s0,
                    int lanes, State<PF> Lg, State<PF> Rg, PF* buf, PF& gw, PF& gu,
                    State<PF>& pleft, State<PF>& pright, i64 pf) {
  State<PF> A0 = left_at<true>(left_into_chunk<true>(Lg, w, s0), w, 0);
  State<PF> Bl = right_at<true>(right_into_chunk<true>(Rg, w, s0), w, len - 1);
  PF M = reference(chunk_kmax(k, v, ts, len, lanes, pf), u, A0, Bl);
  PF eu = ex(u);
  PF sa = ex(A0.o - M), sb = ex(Bl.o - M);
  // Carried part (entering sums decayed by lam^dist; derivatives formed per token as
  // lam^dist (X' - dist X), one rounding) + in-chunk part (plain recurrences, derivatives by
  // da_{t+1} = lam (da_t - a_t)). README: why the carried derivatives must not recur.
  PF An = A0.n * sa, Ad = A0.d * sa, Adn = A0.dn * sa, Add = A0.dd * sa;
  PF Bn = Bl.n * sb, Bd = Bl.d * sb, Bdn = Bl.dn * sb, Bdd = Bl.dd * sb;
  PF bn(0.0f), bd(0.0f), bdn(0.0f), bdd(0.0f), pw(1.0f);  // in-chunk right sums; pw = lam^dist
  for (int t = len - 1; t >= 0; --t) {  // right sums b_t, their derivatives and e_t, per token
    PF kt = Io<PF>::ld(k + t * ts, lanes), vt = Io<PF>::ld(v + t * ts, lanes);
    PF e = ex_nonpositive(kt - M);
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
  // pleft = sum_t exp(t w) p_t = exp((len-1) w - M) (pln, pld); pright = exp(-M) (prn, prd).
  pleft.n = pln; pleft.d = pld; pleft.o = PF(float(len - 1)) * w - M;
  pright.n = prn; pright.d = prd; pright.o = -M;
  pleft.dn = pleft.dd = pright.dn = pright.dd = PF(0.0f);
}

// As chunk_backward_kv (non-causal): gk, gv from the forward carries (Lg, Rg) and the
// backward-scan carries (PLg, PRg), with every backward term relative to
// Q = max(-M, PL0.o, PRl.o): gv_t = exp(k_t + Q) S_t. Returns false (nothing written) when
// max k + Q > kFastKvBound on a lane; the caller then runs the general walk. buf: 5 * len.
template <class T>
bool backward_kv(const T* k, const T* v, const T* g, T* gk, T* gv, i64 ts, int len, PF w, PF u,
                 PF lam, PF s0, int lanes, State<PF> Lg, State<PF> Rg, State<PF> PLg,
                 State<PF> PRg, PF* buf, i64 pf) {
  State<PF> A0 = left_at<false>(left_into_chunk<false>(Lg, w, s0), w, 0);
  State<PF> Bl = right_at<false>(right_into_chunk<false>(Rg, w, s0), w, len - 1);
  State<PF> PL0 = left_at<false>(left_into_chunk<false>(PLg, w, s0), w, 0);
  State<PF> PRl = right_at<false>(right_into_chunk<false>(PRg, w, s0), w, len - 1);
  PF K = chunk_kmax(k, v, ts, len, lanes, pf);
  PF M = reference(K, u, A0, Bl);
  PF Q = vmax(vmax(-M, PL0.o), PRl.o);
  PF KQ = K + Q;
  for (int i = 0; i < lanes; ++i)
    if (!(KQ.x[i] <= kFastKvBound)) return false;
  PF eu = ex(u);
  PF an, ad;
  right_sweep(k, v, ts, len, lam, M, A0, Bl, lanes, buf, 5, an, ad);
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

// ---- work items (the fast counterparts of bi_wkv_core.h's item_*; A = float) ----
// buf: kScratchPerToken * chunk_len packs.

// Phase 1: summaries of chunk j into the carry buffer (F fields per State; DW: with
// w-derivatives).
template <bool DW, int F, class T>
void item_summary(const Dims& d, const Plan& plan, const T* k, const T* v, const float* w,
                  float* carry, i64 b, int j, i64 c0, int lanes, PF* buf, i64 pf) {
  State<PF> left, right;
  const i64 o = d.token0(b, j, c0);
  summary<DW>(k + o, v + o, d.C, d.chunk_size(j), Io<PF>::ld(w + c0, lanes), plan.lam[c0 / kLanes],
              lanes, left, right, buf, pf);
  CarryView<PF, float, F> cv = carry_view<PF, float, F>(d, carry, b, c0, lanes);
  cv.store(j, 0, left);
  cv.store(j, 1, right);
}

// Phase 3 (forward): y for chunk j.
template <class T>
void item_forward(const Dims& d, const Plan& plan, const T* k, const T* v, T* y, const float* w,
                  const float* u, float* carry, i64 b, int j, i64 c0, int lanes, PF* buf,
                  i64 pf) {
  const Item f = make_item(d, plan, w, u, b, j, c0, lanes);
  CarryView<PF, float, kFieldsPlain> cv = carry_view<PF, float, kFieldsPlain>(d, carry, b, c0, lanes);
  forward(k + f.o, v + f.o, y + f.o, d.C, f.n, f.w, f.u, *f.lam, f.t0, lanes, cv.load(j, 0),
          cv.load(j, 1), buf, pf);
}

// Backward phase 3: gw/gu partials of chunk j and backward-scan summaries.
template <class T>
void item_backward_stats(const Dims& d, const Plan& plan, const T* k, const T* v, const T* g,
                         const float* w, const float* u, float* carry, float* pcarry, float* gwp,
                         float* gup, i64 b, int j, i64 c0, int lanes, PF* buf, i64 pf) {
  const Item f = make_item(d, plan, w, u, b, j, c0, lanes);
  CarryView<PF, float, kFieldsDW> cv = carry_view<PF, float, kFieldsDW>(d, carry, b, c0, lanes);
  CarryView<PF, float, kFieldsPlain> pv = carry_view<PF, float, kFieldsPlain>(d, pcarry, b, c0, lanes);
  PF gw, gu;
  State<PF> pl, pr;
  backward_stats(k + f.o, v + f.o, g + f.o, d.C, f.n, f.w, f.u, *f.lam, f.t0, lanes, cv.load(j, 0),
                 cv.load(j, 1), buf, gw, gu, pl, pr, pf);
  pv.store(j, 0, pl);
  pv.store(j, 1, pr);
  const i64 q = (b * d.nch + j) * d.C + c0;
  Io<PF>::st(gwp + q, gw, lanes);
  Io<PF>::st(gup + q, gu, lanes);
}

// Backward phase 5: gk, gv of chunk j; false (nothing written) if the item must take the
// general walk (see backward_kv).
template <class T>
bool item_backward_kv(const Dims& d, const Plan& plan, const T* k, const T* v, const T* g, T* gk,
                      T* gv, const float* w, const float* u, float* carry, float* pcarry, i64 b,
                      int j, i64 c0, int lanes, PF* buf, i64 pf) {
  const Item f = make_item(d, plan, w, u, b, j, c0, lanes);
  CarryView<PF, float, kFieldsDW> cv = carry_view<PF, float, kFieldsDW>(d, carry, b, c0, lanes);
  CarryView<PF, float, kFieldsPlain> pv = carry_view<PF, float, kFieldsPlain>(d, pcarry, b, c0, lanes);
  return backward_kv(k + f.o, v + f.o, g + f.o, gk + f.o, gv + f.o, d.C, f.n, f.w, f.u, *f.lam,
                     f.t0, lanes, cv.load(j, 0), cv.load(j, 1), pv.load(j, 0), pv.load(j, 1), buf, pf);
}

}  // namespace fast
}  // namespace biwkv
