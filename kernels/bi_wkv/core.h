// Bi-WKV numerical core, shared by the CPU and the CUDA kernel: every recurrence of the op
// is in this file (formula and derivation: mmvrwkv/ops/bi_wkv/README.md; how the drivers
// use it: kernels/bi_wkv/README.md).
//
// For one (batch, channel) pair with decay w and bonus u (both already divided by T):
//
//          sum_{i!=t} exp(-(|t-i|-1) w + k_i) v_i  +  exp(u + k_t) v_t
//   y_t = -------------------------------------------------------------
//          sum_{i!=t} exp(-(|t-i|-1) w + k_i)      +  exp(u + k_t)
//
// The left part a_t = sum_{i<t} exp(-(t-1-i) w + k_i) v_i obeys
// a_{t+1} = exp(-w) a_t + exp(k_t) v_t; the right part b_t mirrors it. Every running sum is a
// State: the pair (n, d) (numerator, denominator) scaled by exp(o), with o the running
// maximum exponent, so no exp() ever sees a positive argument larger than 0 and nothing
// overflows whatever k and w are. With DW the State also carries dn, dd = d(n, d)/dw
// (relative to the same exp(o)), which the backward pass needs for the gradient of w.
//
// The sequence is split into chunks. Each chunk is summarised (chunk_summary), the summaries
// are scanned into the sums entering every chunk from the left and the right (carry_scan),
// and each chunk is then walked token by token (chunk_forward, chunk_backward_*). The work
// items (item_*) wrap those per (batch, chunk, channel [pack]).
//
// Two schemes walk a chunk:
//  - the general walk (chunk_*, item_*): running rescaling, any inputs. The CUDA driver runs
//    it with V = float / double, one thread per item; the CPU driver with V = Pack (the
//    "general path": same operations in the same order, results differ only by the exp()
//    implementation and by compiler contraction into FMAs);
//  - the fast walk (fast_*, item_fast_*): one exp() per token, for bidirectional fp32 calls
//    whose chunks are short relative to the decay (kFastBound below). It reads and writes
//    the same State summaries, so fast and general items mix freely in one call; the carry
//    scan between chunks (item_carry) is always the general one. Run by the CPU driver.
//
// Templates: V is the value type (float or double on the GPU, a Pack of channels on the CPU:
// common/value.h and common/simd.h define the interface), T the storage type of k, v, y
// (float, double, half, bfloat16). Loads and stores go through Io<V>.
#pragma once
#include "common/value.h"

namespace biwkv {

using kernels::all_le;
using kernels::ex;
using kernels::kLanesOf;
using kernels::ex_nonpositive;
using kernels::Io;
using kernels::reciprocal;
using kernels::select_ge;
using kernels::vabs;
using kernels::vmax;

// "Empty sum" exponent: exp(kEmpty - anything finite) == 0, and kEmpty - x stays finite.
template <class A> struct Empty;
template <> struct Empty<float> { static constexpr float value = -1e38f; };
template <> struct Empty<double> { static constexpr double value = -1e300; };

// A running sum of (n, d) * exp(o); dn, dd are the derivatives w.r.t. w (used when DW).
template <class V> struct State {
  V n, d, dn, dd, o;
};

template <class V, class S> KERNELS_HD State<V> empty_state() {
  State<V> s;
  s.n = V(S(0)); s.d = V(S(0)); s.dn = V(S(0)); s.dd = V(S(0)); s.o = V(Empty<S>::value);
  return s;
}

// The two factors exp(p - max(p, q)) and exp(q - max(p, q)) with a single exp().
template <class V> KERNELS_HD void rescale_pair(V p, V q, V& ep, V& eq, V& m) {
  m = vmax(p, q);
  V e = ex(-vabs(p - q));
  ep = select_ge(p, q, V(1.0f), e);
  eq = select_ge(p, q, e, V(1.0f));
}

// s += (a, b) * exp(ls); with DW the term's w-derivative is -dist * (a, b) * exp(ls)
// (a weight exp(-dist * w + ...)).
template <bool DW, class V> KERNELS_HD void absorb(State<V>& s, V ls, V a, V b, V dist) {
  V es, ex_, m;
  rescale_pair(s.o, ls, es, ex_, m);
  V ta = a * ex_, tb = b * ex_;
  s.n = s.n * es + ta;
  s.d = s.d * es + tb;
  if (DW) {
    s.dn = s.dn * es - dist * ta;
    s.dd = s.dd * es - dist * tb;
  }
  s.o = m;
}

// Move a sum `len` tokens further: every weight gains a factor exp(-len * w).
template <bool DW, class V> KERNELS_HD void decay(State<V>& s, V w, V len) {
  if (DW) {
    s.dn = s.dn - len * s.n;
    s.dd = s.dd - len * s.d;
  }
  s.o = s.o - len * w;
}

// Position frames. Decaying a running sum by exp(-w) at every token would round its exponent
// once per token, and those errors add up along T. Instead a sum is kept in a frame anchored
// at a fixed position p: a left frame sum holds sum_i exp((i-p) w) X_i and a right frame sum
// sum_i exp(-(i-p) w) X_i (X_i = exp(k_i) (v_i, 1)); the actual sums at token t are
//   a_t = exp(-(t-1-p) w) * left frame sum,   b_t = exp((t+1-p) w) * right frame sum,
// each obtained with a single rounding (decay by t-1-p or -(t+1-p)). Every |(i-p) w| is bounded
// by the undivided decay, so frames never overflow.
template <bool DW, class V> KERNELS_HD void add_left(State<V>& f, V w, int i, V ls, V a, V b) {
  absorb<DW>(f, ls + V(float(i)) * w, a, b, V(float(-i)));
}
template <bool DW, class V> KERNELS_HD void add_right(State<V>& f, V w, int i, V ls, V a, V b) {
  absorb<DW>(f, ls - V(float(i)) * w, a, b, V(float(i)));
}
template <bool DW, class V> KERNELS_HD State<V> left_at(State<V> f, V w, int t) {
  decay<DW>(f, w, V(float(t - 1)));
  return f;
}
template <bool DW, class V> KERNELS_HD State<V> right_at(State<V> f, V w, int t) {
  decay<DW>(f, w, V(float(-(t + 1))));
  return f;
}

// s <- s + x (both sums anchored at the same position).
template <bool DW, class V> KERNELS_HD void merge(State<V>& s, const State<V>& x) {
  V es, ex_, m;
  rescale_pair(s.o, x.o, es, ex_, m);
  s.n = s.n * es + x.n * ex_;
  s.d = s.d * es + x.d * ex_;
  if (DW) {
    s.dn = s.dn * es + x.dn * ex_;
    s.dd = s.dd * es + x.dd * ex_;
  }
  s.o = m;
}

// Output of one token from its left sum L, right sum R and bonus exp(u + k) (v, 1).
// The denominator is den * exp(m) with den >= 1 (the largest of the three terms is 1).
template <class V> struct Out {
  V y, den, m, eL, eR, eX;
};

template <class V> KERNELS_HD Out<V> combine(const State<V>& L, const State<V>& R, V ls_bonus, V v) {
  Out<V> r;
  r.m = vmax(vmax(L.o, R.o), ls_bonus);
  r.eL = ex(L.o - r.m);
  r.eR = ex(R.o - r.m);
  r.eX = ex(ls_bonus - r.m);
  V num = L.n * r.eL + R.n * r.eR + v * r.eX;
  r.den = L.d * r.eL + R.d * r.eR + r.eX;
  r.y = num / r.den;
  return r;
}

// ---------------------------------------------------------------------------------------
// Chunk level. Pointers address token 0 of the chunk for this (batch, channel [pack]);
// consecutive tokens are `ts` elements apart. `lanes` is forwarded to ld()/st().
// ---------------------------------------------------------------------------------------

// Summaries of one chunk of `len` tokens, both in the frame of the chunk start (token 0):
//   left  = sum_t exp(t w + k_t) (v_t, 1),   right = sum_t exp(-t w + k_t) (v_t, 1).
template <bool DW, class V, class T, class I>
KERNELS_HD void chunk_summary(const T* k, const T* v, I ts, int len, V w, int lanes,
                              State<V>& left, State<V>& right, bool causal) {
  for (int t = 0; t < len; ++t) {
    V kt = Io<V>::ld(k + t * ts, lanes), vt = Io<V>::ld(v + t * ts, lanes);
    add_left<DW>(left, w, t, kt, vt, V(1.0f));
    if (!causal) add_right<DW>(right, w, t, kt, vt, V(1.0f));
  }
}

// In place, for one (batch, channel): chunk summaries (chunk frames) become the sums of all
// tokens left of / right of each chunk, in the global frame (anchored at token 0). Chunk j
// starts at j * chunk_len. Only merges (no running decay), so rounding does not accumulate.
template <bool DW, class V, class View>
KERNELS_HD void carry_scan(const View& acc, int nch, int chunk_len, V w, bool left_dir, bool right_dir) {
  typedef typename View::scalar Sc;
  if (left_dir) {
    State<V> g = empty_state<V, Sc>();
    for (int j = 0; j < nch; ++j) {
      State<V> s = acc.load(j, 0);
      acc.store(j, 0, g);
      decay<DW>(s, w, V(-float(j) * float(chunk_len)));
      merge<DW>(g, s);
    }
  }
  if (right_dir) {
    State<V> g = empty_state<V, Sc>();
    for (int j = nch - 1; j >= 0; --j) {
      State<V> s = acc.load(j, 1);
      acc.store(j, 1, g);
      decay<DW>(s, w, V(float(j) * float(chunk_len)));
      merge<DW>(g, s);
    }
  }
}

// Global-frame carries -> frames of the chunk starting at token s0.
template <bool DW, class V> KERNELS_HD State<V> left_into_chunk(State<V> g, V w, V s0) {
  decay<DW>(g, w, s0);
  return g;
}
template <bool DW, class V> KERNELS_HD State<V> right_into_chunk(State<V> g, V w, V s0) {
  decay<DW>(g, w, -s0);
  return g;
}

// Forward walk of one chunk starting at token s0, given the carries (global frame).
// `buf` holds len States (scratch).
template <class V, class T, class I>
KERNELS_HD void chunk_forward(const T* k, const T* v, T* y, I ts, int len, V w, V u, V s0, int lanes,
                              State<V> Lg, State<V> Rg, State<V>* buf, bool causal) {
  State<V> fr = right_into_chunk<false>(Rg, w, s0);
  for (int t = len - 1; t >= 0; --t) {  // right sums b_t, stored per token
    buf[t] = right_at<false>(fr, w, t);
    if (!causal) add_right<false>(fr, w, t, Io<V>::ld(k + t * ts, lanes), Io<V>::ld(v + t * ts, lanes), V(1.0f));
  }
  State<V> fl = left_into_chunk<false>(Lg, w, s0);
  for (int t = 0; t < len; ++t) {
    V kt = Io<V>::ld(k + t * ts, lanes), vt = Io<V>::ld(v + t * ts, lanes);
    Out<V> o = combine(left_at<false>(fl, w, t), buf[t], u + kt, vt);
    Io<V>::st(y + t * ts, o.y, lanes);
    add_left<false>(fl, w, t, kt, vt, V(1.0f));
  }
}

// Backward, pass 1 over one chunk: recomputes y and the output denominators D_t, and
//  - accumulates this chunk's share of dL/dw and dL/du into gw, gu;
//  - writes the chunk summaries of the backward scans, whose token terms are
//    p_t = g_t / D_t (in .n) and p_t * y_t (in .d), stored as (a, b) * exp(ls).
// The forward sums carry w-derivatives (DW) here. `buf` holds len States.
template <class V, class T, class I>
KERNELS_HD void chunk_backward_stats(const T* k, const T* v, const T* g, I ts, int len, V w, V u,
                                     V s0, int lanes, State<V> Lg, State<V> Rg, State<V>* buf, V& gw,
                                     V& gu, State<V>& pleft, State<V>& pright, bool causal) {
  State<V> fr = right_into_chunk<true>(Rg, w, s0);
  for (int t = len - 1; t >= 0; --t) {
    buf[t] = right_at<true>(fr, w, t);
    if (!causal) add_right<true>(fr, w, t, Io<V>::ld(k + t * ts, lanes), Io<V>::ld(v + t * ts, lanes), V(1.0f));
  }
  State<V> fl = left_into_chunk<true>(Lg, w, s0);
  for (int t = 0; t < len; ++t) {
    V kt = Io<V>::ld(k + t * ts, lanes), vt = Io<V>::ld(v + t * ts, lanes), gt = Io<V>::ld(g + t * ts, lanes);
    const State<V>& R = buf[t];
    State<V> L = left_at<true>(fl, w, t);
    Out<V> o = combine(L, R, u + kt, vt);
    V a = gt / o.den, b = a * o.y, ls = -o.m;
    gw = gw + a * ((L.dn - o.y * L.dd) * o.eL + (R.dn - o.y * R.dd) * o.eR);
    gu = gu + a * (vt - o.y) * o.eX;
    if (!causal) add_left<false>(pleft, w, t, ls, a, b);
    add_right<false>(pright, w, t, ls, a, b);
    add_left<true>(fl, w, t, kt, vt, V(1.0f));
  }
}

// Backward, pass 2 over one chunk: gk, gv from the forward carries (Lg, Rg) and the
// backward-scan carries (PLg, PRg), all in the global frame. `buf` holds 2 * len States.
//   gv_i = exp(k_i) (exp(u) p_i + PL_i + PR_i)
//   gk_i = v_i gv_i - exp(k_i) (exp(u) p_i y_i + [the same sums of p y])
// In the causal case y_t sees only i < t, so only PR (terms of later tokens) enters.
template <class V, class T, class I>
KERNELS_HD void chunk_backward_kv(const T* k, const T* v, const T* g, T* gk, T* gv, I ts, int len,
                                  V w, V u, V s0, int lanes, State<V> Lg, State<V> Rg, State<V> PLg,
                                  State<V> PRg, State<V>* buf, bool causal) {
  State<V>* rbuf = buf;        // forward right sums, then the token terms p: (a, b) exp(o)
  State<V>* pbuf = buf + len;  // backward left sums per token
  State<V> fr = right_into_chunk<false>(Rg, w, s0);
  for (int t = len - 1; t >= 0; --t) {
    rbuf[t] = right_at<false>(fr, w, t);
    if (!causal) add_right<false>(fr, w, t, Io<V>::ld(k + t * ts, lanes), Io<V>::ld(v + t * ts, lanes), V(1.0f));
  }
  State<V> fl = left_into_chunk<false>(Lg, w, s0);
  State<V> fpl = left_into_chunk<false>(PLg, w, s0);
  for (int t = 0; t < len; ++t) {
    V kt = Io<V>::ld(k + t * ts, lanes), vt = Io<V>::ld(v + t * ts, lanes), gt = Io<V>::ld(g + t * ts, lanes);
    Out<V> o = combine(left_at<false>(fl, w, t), rbuf[t], u + kt, vt);
    State<V> p;
    p.n = gt / o.den; p.d = p.n * o.y; p.o = -o.m; p.dn = p.n; p.dd = p.d;
    rbuf[t] = p;
    if (!causal) {
      pbuf[t] = left_at<false>(fpl, w, t);
      add_left<false>(fpl, w, t, p.o, p.n, p.d);
    }
    add_left<false>(fl, w, t, kt, vt, V(1.0f));
  }
  State<V> fpr = right_into_chunk<false>(PRg, w, s0);
  for (int t = len - 1; t >= 0; --t) {
    V kt = Io<V>::ld(k + t * ts, lanes), vt = Io<V>::ld(v + t * ts, lanes);
    const State<V>& p = rbuf[t];
    State<V> PR = right_at<false>(fpr, w, t);
    // exp(k) * [exp(u + ls) (a, b) + PL + PR], all relative to the largest exponent z.
    V sa = p.n, sb = p.d, z = u + p.o, el = V(0.0f);
    State<V> PL = PR;
    if (!causal) {
      PL = pbuf[t];
      z = vmax(z, PL.o);
    }
    z = vmax(z, PR.o);
    if (!causal) el = ex(PL.o - z);
    V er = ex(PR.o - z), eb = ex(u + p.o - z);
    sa = PL.n * el + PR.n * er + sa * eb;
    sb = PL.d * el + PR.d * er + sb * eb;
    V scale = ex(kt + z);
    V gvt = sa * scale;
    Io<V>::st(gv + t * ts, gvt, lanes);
    Io<V>::st(gk + t * ts, vt * gvt - sb * scale, lanes);
    add_right<false>(fpr, w, t, p.o, p.n, p.d);
  }
}

// ---------------------------------------------------------------------------------------
// Work items. Both drivers map (batch b, chunk j, first channel c0) to a thread (CUDA) or a
// loop iteration (CPU, c0 a multiple of the pack width) and call these (or, on the CPU,
// their fast counterparts item_fast_* below for phases 1, 3 and 5); the drivers only
// allocate buffers, schedule and launch.
// Layouts: k, v, g, y, gk, gv [B, T, C] contiguous; w, u [C] in the accumulation type A;
// carries [B, nch, 2 (left, right), F, C] of A and gw/gu partials [B, nch, C] of A (both
// allocated by bi_wkv/host.h: carry_buffer, partial_sums).
// ---------------------------------------------------------------------------------------

typedef long long i64;

struct Dims {
  i64 B, T, C;
  int chunk_len, nch;
  bool causal;
  KERNELS_HD int chunk_size(int j) const {
    i64 s = (i64)j * chunk_len;
    return (int)(s + chunk_len <= T ? chunk_len : T - s);
  }
  KERNELS_HD float chunk_start(int j) const { return float(j) * float(chunk_len); }
  KERNELS_HD i64 token0(i64 b, int j, i64 c0) const { return (b * T + (i64)j * chunk_len) * C + c0; }
};

// Fields per State in a carry buffer: with w-derivatives (n, d, dn, dd, o; the backward
// pass's forward sums) or without (n, d, o). host.h's carry_buffer() allocates them.
constexpr int kFieldsDW = 5;
constexpr int kFieldsPlain = 3;

// View of one (batch, channel pack) column of a carry buffer with F fields per State
// (F = kFieldsDW or kFieldsPlain).
template <class V, class A, int F> struct CarryView {
  typedef A scalar;
  A* p;  // element (b, chunk 0, left, field 0, c0)
  i64 C;
  int lanes;
  KERNELS_HD A* at(int j, int dir, int f) const { return p + (((i64)j * 2 + dir) * F + f) * C; }
  KERNELS_HD State<V> load(int j, int dir) const {
    State<V> s;
    s.n = Io<V>::ld(at(j, dir, 0), lanes);
    s.d = Io<V>::ld(at(j, dir, 1), lanes);
    if (F == kFieldsDW) {
      s.dn = Io<V>::ld(at(j, dir, 2), lanes);
      s.dd = Io<V>::ld(at(j, dir, 3), lanes);
    } else {
      s.dn = V(0.0f); s.dd = V(0.0f);
    }
    s.o = Io<V>::ld(at(j, dir, F - 1), lanes);
    return s;
  }
  KERNELS_HD void store(int j, int dir, const State<V>& s) const {
    Io<V>::st(at(j, dir, 0), s.n, lanes);
    Io<V>::st(at(j, dir, 1), s.d, lanes);
    if (F == kFieldsDW) {
      Io<V>::st(at(j, dir, 2), s.dn, lanes);
      Io<V>::st(at(j, dir, 3), s.dd, lanes);
    }
    Io<V>::st(at(j, dir, F - 1), s.o, lanes);
  }
};

template <class V, class A, int F>
KERNELS_HD CarryView<V, A, F> carry_view(const Dims& d, A* buf, i64 b, i64 c0, int lanes) {
  CarryView<V, A, F> cv;
  cv.p = buf + b * d.nch * 2 * F * d.C + c0;
  cv.C = d.C;
  cv.lanes = lanes;
  return cv;
}

// Phase 1: summaries of chunk j into the carry buffer.
template <bool DW, int F, class V, class T, class A>
KERNELS_HD void item_summary(const Dims& d, const T* k, const T* v, const A* w, A* carry, i64 b,
                             int j, i64 c0, int lanes) {
  State<V> left = empty_state<V, A>(), right = empty_state<V, A>();
  i64 o = d.token0(b, j, c0);
  chunk_summary<DW>(k + o, v + o, d.C, d.chunk_size(j), Io<V>::ld(w + c0, lanes), lanes, left,
                    right, d.causal);
  CarryView<V, A, F> cv = carry_view<V, A, F>(d, carry, b, c0, lanes);
  cv.store(j, 0, left);
  cv.store(j, 1, right);
}

// Phase 2: summaries -> sums entering each chunk, for one (batch, channel pack).
template <bool DW, int F, class V, class A>
KERNELS_HD void item_carry(const Dims& d, const A* w, A* carry, i64 b, i64 c0, int lanes,
                           bool left_dir, bool right_dir) {
  CarryView<V, A, F> cv = carry_view<V, A, F>(d, carry, b, c0, lanes);
  carry_scan<DW>(cv, d.nch, d.chunk_len, Io<V>::ld(w + c0, lanes), left_dir, right_dir);
}

// Phase 3 (forward): y for chunk j. buf: chunk_len States.
template <int F, class V, class T, class A>
KERNELS_HD void item_forward(const Dims& d, const T* k, const T* v, T* y, const A* w, const A* u,
                             A* carry, i64 b, int j, i64 c0, int lanes, State<V>* buf) {
  CarryView<V, A, F> cv = carry_view<V, A, F>(d, carry, b, c0, lanes);
  i64 o = d.token0(b, j, c0);
  chunk_forward(k + o, v + o, y + o, d.C, d.chunk_size(j), Io<V>::ld(w + c0, lanes),
                Io<V>::ld(u + c0, lanes), V(d.chunk_start(j)), lanes, cv.load(j, 0), cv.load(j, 1), buf, d.causal);
}

// Backward phase 3: gw/gu partials of chunk j and backward-scan summaries. buf: chunk_len States.
template <class V, class T, class A>
KERNELS_HD void item_backward_stats(const Dims& d, const T* k, const T* v, const T* g, const A* w,
                                    const A* u, A* carry, A* pcarry, A* gwp, A* gup, i64 b, int j,
                                    i64 c0, int lanes, State<V>* buf) {
  CarryView<V, A, kFieldsDW> cv = carry_view<V, A, kFieldsDW>(d, carry, b, c0, lanes);
  CarryView<V, A, kFieldsPlain> pv = carry_view<V, A, kFieldsPlain>(d, pcarry, b, c0, lanes);
  i64 o = d.token0(b, j, c0);
  V gw = V(0.0f), gu = V(0.0f);
  State<V> pl = empty_state<V, A>(), pr = empty_state<V, A>();
  chunk_backward_stats(k + o, v + o, g + o, d.C, d.chunk_size(j), Io<V>::ld(w + c0, lanes),
                       Io<V>::ld(u + c0, lanes), V(d.chunk_start(j)), lanes, cv.load(j, 0),
                       cv.load(j, 1), buf, gw, gu,
                       pl, pr, d.causal);
  pv.store(j, 0, pl);
  pv.store(j, 1, pr);
  i64 q = (b * d.nch + j) * d.C + c0;
  Io<V>::st(gwp + q, gw, lanes);
  Io<V>::st(gup + q, gu, lanes);
}

// Backward phase 5: gk, gv of chunk j. buf: 2 * chunk_len States.
template <class V, class T, class A>
KERNELS_HD void item_backward_kv(const Dims& d, const T* k, const T* v, const T* g, T* gk, T* gv,
                                 const A* w, const A* u, A* carry, A* pcarry, i64 b, int j, i64 c0,
                                 int lanes, State<V>* buf) {
  CarryView<V, A, kFieldsDW> cv = carry_view<V, A, kFieldsDW>(d, carry, b, c0, lanes);
  CarryView<V, A, kFieldsPlain> pv = carry_view<V, A, kFieldsPlain>(d, pcarry, b, c0, lanes);
  i64 o = d.token0(b, j, c0);
  chunk_backward_kv(k + o, v + o, g + o, gk + o, gv + o, d.C, d.chunk_size(j),
                    Io<V>::ld(w + c0, lanes), Io<V>::ld(u + c0, lanes), V(d.chunk_start(j)), lanes,
                    cv.load(j, 0),
                    cv.load(j, 1), pv.load(j, 0), pv.load(j, 1), buf, d.causal);
}

// ---------------------------------------------------------------------------------------
// The fast walk: one exp() per token instead of the general walk's running rescaling, for
// bidirectional calls with fp32 math whose chunks are short relative to the decay
// (chunk_len * |w| <= kFastBound, |u| <= kFastBound, decided per channel pack by the CPU
// driver). Every exponent of a chunk is taken relative to one per-chunk reference, so the
// sums follow plain recurrences a_{t+1} = lam a_t + e_t (v_t, 1) with lam = exp(-w).
// Derivation, safety bounds and accuracy: kernels/bi_wkv/README.md, "The fast walk".
// V is a float value type (the CPU driver's PackOf<float>).
// ---------------------------------------------------------------------------------------

constexpr float kFastBound = 20.0f;    // on chunk_len * |w| and |u|
constexpr int kFastMaxChunk = 64;      // bounds the lam^n rounding (~n * 6e-8 relative)
constexpr float kFastKvBound = 40.0f;  // on max k + Q in fast_backward_kv (else: general walk)
// Scratch of one fast item, in values per token of the chunk (the largest need, phases 3, 5).
constexpr int kFastScratchPerToken = 5;

// Hint that the 64-byte line of k and v at p + pf is read soon (token t of an item passes
// p = its base + t kLanes: one line of the item's share of the next chunk's rows, see the
// CPU driver's for_items).
template <class T> KERNELS_HD void prefetch_row(const T* k, const T* v, i64 pf) {
#ifndef __CUDA_ARCH__
  __builtin_prefetch(k + pf);
  __builtin_prefetch(v + pf);
#endif
}

// Largest k of a chunk (the first read of the item's rows: prefetches the next item's).
template <class V, class T>
KERNELS_HD V chunk_kmax(const T* k, const T* v, i64 ts, int len, int lanes, i64 pf) {
  // two running maxima (even / odd tokens): halves the chain of dependent max latencies
  V K0(Empty<float>::value), K1 = K0;
  int t = 0;
  for (; t + 1 < len; t += 2) {
    prefetch_row(k + t * kLanesOf<V>, v + t * kLanesOf<V>, pf);
    prefetch_row(k + (t + 1) * kLanesOf<V>, v + (t + 1) * kLanesOf<V>, pf);
    K0 = vmax(K0, Io<V>::ld(k + t * ts, lanes));
    K1 = vmax(K1, Io<V>::ld(k + (t + 1) * ts, lanes));
  }
  if (t < len) {
    prefetch_row(k + t * kLanesOf<V>, v + t * kLanesOf<V>, pf);
    K0 = vmax(K0, Io<V>::ld(k + t * ts, lanes));
  }
  return vmax(K0, K1);
}

// As chunk_summary (non-causal): left = sum_t exp(t w + k_t) (v_t, 1), right =
// sum_t exp(-t w + k_t) (v_t, 1) in the frame of token 0, normalised to the State format
// (o = the largest term's exponent). With DW also their w-derivatives. buf: 2 * len packs.
template <bool DW, class V, class T>
KERNELS_HD void fast_summary(const T* k, const T* v, i64 ts, int len, V w, V lam, int lanes,
                             State<V>& left, State<V>& right, V* buf, i64 pf) {
  // K = max k; ml, mr: the largest exponents k_t +- t w.
  V K(Empty<float>::value), ml = K, mr = K;
  for (int t = 0; t < len; ++t) {
    prefetch_row(k + t * kLanesOf<V>, v + t * kLanesOf<V>, pf);
    V kt = Io<V>::ld(k + t * ts, lanes), tw = V(float(t)) * w;
    K = vmax(K, kt);
    ml = vmax(ml, kt + tw);
    mr = vmax(mr, kt - tw);
  }
  // Horner sums of e_t X_t, e_t = exp(k_t - K): ln = sum lam^(len-1-t) e_t X_t (forward),
  // rn = sum lam^t e_t X_t (backward); the derivative sums weight each term by t.
  V ln(0.0f), ld(0.0f), rn(0.0f), rd(0.0f);
  V lnd(0.0f), ldd(0.0f), rnd(0.0f), rdd(0.0f);
  for (int t = 0; t < len; ++t) {  // e_t and e_t v_t are kept for the backward sweep
    V kt = Io<V>::ld(k + t * ts, lanes), vt = Io<V>::ld(v + t * ts, lanes);
    V e = ex_nonpositive(kt - K), ev = e * vt;
    buf[2 * t] = e;
    buf[2 * t + 1] = ev;
    ln = lam * ln + ev;
    ld = lam * ld + e;
    if (DW) {
      V tf = V(float(t));
      lnd = lam * lnd + tf * ev;
      ldd = lam * ldd + tf * e;
    }
  }
  for (int t = len - 1; t >= 0; --t) {
    rn = lam * rn + buf[2 * t + 1];
    rd = lam * rd + buf[2 * t];
    if (DW) {
      V tf = V(float(t));
      rnd = lam * rnd + tf * buf[2 * t + 1];
      rdd = lam * rdd + tf * buf[2 * t];
    }
  }
  // left = exp(K + (len-1) w) (ln, ld) = exp(ml) * exp(K + (len-1) w - ml) (ln, ld).
  V sl = ex(K + V(float(len - 1)) * w - ml), sr = ex(K - mr);
  left.n = ln * sl; left.d = ld * sl; left.o = ml;
  right.n = rn * sr; right.d = rd * sr; right.o = mr;
  if (DW) {
    left.dn = lnd * sl; left.dd = ldd * sl;
    right.dn = -(rnd * sr); right.dd = -(rdd * sr);
  } else {
    left.dn = left.dd = right.dn = right.dd = V(0.0f);
  }
}

// The chunk reference M: the largest of max k (+ u if u > 0) and the entering sums'
// exponents (A0: left sum at token 0, Bl: right sum at token len-1).
template <class V> KERNELS_HD V fast_reference(V K, V u, const State<V>& A0, const State<V>& Bl) {
  return vmax(vmax(K + vmax(u, V(0.0f)), A0.o), Bl.o);
}

// Right-to-left sweep shared by forward and backward_kv: with every sum relative to exp(M),
// stores the right sum b_t (n, d) and e_t = exp(k_t - M) at buf[stride * t + 0, 1, 2], and
// returns in (an, ad) the left sum entering token 0.
template <class V, class T>
KERNELS_HD void fast_right_sweep(const T* k, const T* v, i64 ts, int len, V lam, V M,
                                 const State<V>& A0, const State<V>& Bl, int lanes, V* buf,
                                 int stride, V& an, V& ad) {
  V sa = ex(A0.o - M), sb = ex(Bl.o - M);
  an = A0.n * sa;
  ad = A0.d * sa;
  V bn = Bl.n * sb, bd = Bl.d * sb;
  for (int t = len - 1; t >= 0; --t) {
    V kt = Io<V>::ld(k + t * ts, lanes), vt = Io<V>::ld(v + t * ts, lanes);
    V e = ex_nonpositive(kt - M);
    V* q = buf + stride * t;
    q[0] = bn; q[1] = bd; q[2] = e;
    bn = lam * bn + e * vt;
    bd = lam * bd + e;
  }
}

// As chunk_forward (non-causal). buf: 3 * len packs.
template <class V, class T>
KERNELS_HD void fast_forward(const T* k, const T* v, T* y, i64 ts, int len, V w, V u, V lam, V s0,
                             int lanes, State<V> Lg, State<V> Rg, V* buf, i64 pf) {
  State<V> A0 = left_at<false>(left_into_chunk<false>(Lg, w, s0), w, 0);
  State<V> Bl = right_at<false>(right_into_chunk<false>(Rg, w, s0), w, len - 1);
  for (int t = 0; t < len; ++t) __builtin_prefetch(y + t * kLanesOf<V> + pf, 1);
  V M = fast_reference(chunk_kmax<V>(k, v, ts, len, lanes, pf), u, A0, Bl);
  V eu = ex(u);
  V an, ad;
  fast_right_sweep(k, v, ts, len, lam, M, A0, Bl, lanes, buf, 3, an, ad);
  for (int t = 0; t < len; ++t) {
    V vt = Io<V>::ld(v + t * ts, lanes);
    V e = buf[3 * t + 2], be = eu * e;
    V num = an + buf[3 * t] + be * vt;
    V den = ad + buf[3 * t + 1] + be;
    Io<V>::st(y + t * ts, num * reciprocal(den), lanes);
    an = lam * an + e * vt;
    ad = lam * ad + e;
  }
}

// As chunk_backward_stats (non-causal): gw/gu partials of the chunk and the backward-scan
// summaries pleft, pright (all token terms p_t share the exponent -M). Lg, Rg: forward
// carries with w-derivatives (global frame). buf: 5 * len packs.
template <class V, class T>
KERNELS_HD void fast_backward_stats(const T* k, const T* v, const T* g, i64 ts, int len, V w, V u,
                                    V lam, V s0, int lanes, State<V> Lg, State<V> Rg, V* buf,
                                    V& gw, V& gu, State<V>& pleft, State<V>& pright, i64 pf) {
  State<V> A0 = left_at<true>(left_into_chunk<true>(Lg, w, s0), w, 0);
  State<V> Bl = right_at<true>(right_into_chunk<true>(Rg, w, s0), w, len - 1);
  V M = fast_reference(chunk_kmax<V>(k, v, ts, len, lanes, pf), u, A0, Bl);
  V eu = ex(u);
  V sa = ex(A0.o - M), sb = ex(Bl.o - M);
  // Carried part (entering sums decayed by lam^dist; derivatives formed per token as
  // lam^dist (X' - dist X), one rounding) + in-chunk part (plain recurrences, derivatives by
  // da_{t+1} = lam (da_t - a_t)). README: why the carried derivatives must not recur.
  V An = A0.n * sa, Ad = A0.d * sa, Adn = A0.dn * sa, Add = A0.dd * sa;
  V Bn = Bl.n * sb, Bd = Bl.d * sb, Bdn = Bl.dn * sb, Bdd = Bl.dd * sb;
  V bn(0.0f), bd(0.0f), bdn(0.0f), bdd(0.0f), pw(1.0f);  // in-chunk right sums; pw = lam^dist
  for (int t = len - 1; t >= 0; --t) {  // right sums b_t, their derivatives and e_t, per token
    V kt = Io<V>::ld(k + t * ts, lanes), vt = Io<V>::ld(v + t * ts, lanes);
    V e = ex_nonpositive(kt - M);
    V dist = V(float(len - 1 - t));
    V* q = buf + 5 * t;
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
  V gwa(0.0f), gua(0.0f);
  V an(0.0f), ad(0.0f), adn(0.0f), add(0.0f);  // in-chunk left sums
  V pln(0.0f), pld(0.0f), prn(0.0f), prd(0.0f);
  pw = V(1.0f);  // lam^t
  for (int t = 0; t < len; ++t) {
    V vt = Io<V>::ld(v + t * ts, lanes), gt = Io<V>::ld(g + t * ts, lanes);
    const V* q = buf + 5 * t;
    V tf = V(float(t));
    V Ln = pw * An + an, Ld = pw * Ad + ad;
    V Ldn = pw * (Adn - tf * An) + adn, Ldd = pw * (Add - tf * Ad) + add;
    V e = q[4], be = eu * e;
    V num = Ln + q[0] + be * vt;
    V den = Ld + q[1] + be;
    V y = num / den, a = gt / den, ay = a * y;
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
  pleft.n = pln; pleft.d = pld; pleft.o = V(float(len - 1)) * w - M;
  pright.n = prn; pright.d = prd; pright.o = -M;
  pleft.dn = pleft.dd = pright.dn = pright.dd = V(0.0f);
}

// As chunk_backward_kv (non-causal): gk, gv from the forward carries (Lg, Rg) and the
// backward-scan carries (PLg, PRg), with every backward term relative to
// Q = max(-M, PL0.o, PRl.o): gv_t = exp(k_t + Q) S_t. Returns false (nothing written) when
// max k + Q > kFastKvBound on a lane; the caller then runs the general walk. buf: 5 * len.
template <class V, class T>
KERNELS_HD bool fast_backward_kv(const T* k, const T* v, const T* g, T* gk, T* gv, i64 ts, int len,
                                 V w, V u, V lam, V s0, int lanes, State<V> Lg, State<V> Rg,
                                 State<V> PLg, State<V> PRg, V* buf, i64 pf) {
  State<V> A0 = left_at<false>(left_into_chunk<false>(Lg, w, s0), w, 0);
  State<V> Bl = right_at<false>(right_into_chunk<false>(Rg, w, s0), w, len - 1);
  State<V> PL0 = left_at<false>(left_into_chunk<false>(PLg, w, s0), w, 0);
  State<V> PRl = right_at<false>(right_into_chunk<false>(PRg, w, s0), w, len - 1);
  V K = chunk_kmax<V>(k, v, ts, len, lanes, pf);
  V M = fast_reference(K, u, A0, Bl);
  V Q = vmax(vmax(-M, PL0.o), PRl.o);
  V KQ = K + Q;
  if (!all_le(KQ, kFastKvBound, lanes)) return false;
  V eu = ex(u);
  V an, ad;
  fast_right_sweep(k, v, ts, len, lam, M, A0, Bl, lanes, buf, 5, an, ad);
  V cM = ex(-M - Q), cL = ex(PL0.o - Q), cR = ex(PRl.o - Q);
  V pln = PL0.n * cL, pld = PL0.d * cL;
  for (int t = 0; t < len; ++t) {  // y_t, the terms a'_t (.., y_t) and the left scan PL'_t
    V vt = Io<V>::ld(v + t * ts, lanes), gt = Io<V>::ld(g + t * ts, lanes);
    V* q = buf + 5 * t;
    V e = q[2], be = eu * e;
    V num = an + q[0] + be * vt;
    V den = ad + q[1] + be;
    V y = num / den, a = (gt / den) * cM, ay = a * y;
    q[0] = a; q[1] = ay; q[2] = pln; q[3] = pld;
    pln = lam * pln + a;
    pld = lam * pld + ay;
    an = lam * an + e * vt;
    ad = lam * ad + e;
  }
  V prn = PRl.n * cR, prd = PRl.d * cR;
  for (int t = len - 1; t >= 0; --t) {
    V kt = Io<V>::ld(k + t * ts, lanes), vt = Io<V>::ld(v + t * ts, lanes);
    const V* q = buf + 5 * t;
    V scale = ex(kt + Q);
    V gvt = (eu * q[0] + q[2] + prn) * scale;
    V sbt = (eu * q[1] + q[3] + prd) * scale;
    Io<V>::st(gv + t * ts, gvt, lanes);
    Io<V>::st(gk + t * ts, vt * gvt - sbt, lanes);
    prn = lam * prn + q[0];
    prd = lam * prd + q[1];
  }
  return true;
}

// ---- work items of the fast walk (the counterparts of item_summary, item_forward,
// item_backward_stats and item_backward_kv; fp32 math: w, u, carries are float) ----
// lam: exp(-w) of the item's channels (the CPU driver computes it once per call);
// buf: kFastScratchPerToken * chunk_len values; pf: see prefetch_row.

// Phase 1: summaries of chunk j into the carry buffer (F fields per State; DW: with
// w-derivatives).
template <bool DW, int F, class V, class T>
KERNELS_HD void item_fast_summary(const Dims& d, const T* k, const T* v, const float* w, const V& lam,
                                  float* carry, i64 b, int j, i64 c0, int lanes, V* buf, i64 pf) {
  State<V> left, right;
  const i64 o = d.token0(b, j, c0);
  fast_summary<DW>(k + o, v + o, d.C, d.chunk_size(j), Io<V>::ld(w + c0, lanes), lam, lanes, left,
                   right, buf, pf);
  CarryView<V, float, F> cv = carry_view<V, float, F>(d, carry, b, c0, lanes);
  cv.store(j, 0, left);
  cv.store(j, 1, right);
}

// Phase 3 (forward): y for chunk j.
template <class V, class T>
KERNELS_HD void item_fast_forward(const Dims& d, const T* k, const T* v, T* y, const float* w,
                                  const float* u, const V& lam, float* carry, i64 b, int j, i64 c0,
                                  int lanes, V* buf, i64 pf) {
  const i64 o = d.token0(b, j, c0);
  CarryView<V, float, kFieldsPlain> cv = carry_view<V, float, kFieldsPlain>(d, carry, b, c0, lanes);
  fast_forward(k + o, v + o, y + o, d.C, d.chunk_size(j), Io<V>::ld(w + c0, lanes),
               Io<V>::ld(u + c0, lanes), lam, V(d.chunk_start(j)), lanes, cv.load(j, 0),
               cv.load(j, 1), buf, pf);
}

// Backward phase 3: gw/gu partials of chunk j and backward-scan summaries.
template <class V, class T>
KERNELS_HD void item_fast_backward_stats(const Dims& d, const T* k, const T* v, const T* g,
                                         const float* w, const float* u, const V& lam, float* carry,
                                         float* pcarry, float* gwp, float* gup, i64 b, int j,
                                         i64 c0, int lanes, V* buf, i64 pf) {
  const i64 o = d.token0(b, j, c0);
  CarryView<V, float, kFieldsDW> cv = carry_view<V, float, kFieldsDW>(d, carry, b, c0, lanes);
  CarryView<V, float, kFieldsPlain> pv = carry_view<V, float, kFieldsPlain>(d, pcarry, b, c0, lanes);
  V gw, gu;
  State<V> pl, pr;
  fast_backward_stats(k + o, v + o, g + o, d.C, d.chunk_size(j), Io<V>::ld(w + c0, lanes),
                      Io<V>::ld(u + c0, lanes), lam, V(d.chunk_start(j)), lanes, cv.load(j, 0),
                      cv.load(j, 1), buf, gw, gu, pl, pr, pf);
  pv.store(j, 0, pl);
  pv.store(j, 1, pr);
  const i64 q = (b * d.nch + j) * d.C + c0;
  Io<V>::st(gwp + q, gw, lanes);
  Io<V>::st(gup + q, gu, lanes);
}

// Backward phase 5: gk, gv of chunk j; false (nothing written) if the item must take the
// general walk (see fast_backward_kv).
template <class V, class T>
KERNELS_HD bool item_fast_backward_kv(const Dims& d, const T* k, const T* v, const T* g, T* gk,
                                      T* gv, const float* w, const float* u, const V& lam,
                                      float* carry, float* pcarry, i64 b, int j, i64 c0, int lanes,
                                      V* buf, i64 pf) {
  const i64 o = d.token0(b, j, c0);
  CarryView<V, float, kFieldsDW> cv = carry_view<V, float, kFieldsDW>(d, carry, b, c0, lanes);
  CarryView<V, float, kFieldsPlain> pv = carry_view<V, float, kFieldsPlain>(d, pcarry, b, c0, lanes);
  return fast_backward_kv(k + o, v + o, g + o, gk + o, gv + o, d.C, d.chunk_size(j),
                          Io<V>::ld(w + c0, lanes), Io<V>::ld(u + c0, lanes), lam,
                          V(d.chunk_start(j)), lanes, cv.load(j, 0), cv.load(j, 1), pv.load(j, 0),
                          pv.load(j, 1), buf, pf);
}

}  // namespace biwkv
