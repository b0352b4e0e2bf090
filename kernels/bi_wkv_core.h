// Bi-WKV numerical core, shared by the CPU and the CUDA kernel.
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
// and each chunk is then walked token by token (chunk_forward, chunk_backward_*).
//
// What the drivers share (kernels/README.md has the details):
//  - The CUDA driver (bi_wkv_cuda.cu) runs only this file: one thread per work item (item_*
//    below) with V = float or double.
//  - The CPU driver (bi_wkv_cpu.cpp) runs the same item_* functions on packs of channels
//    (V = Pack, bi_wkv_cpu_pack.h) wherever its fast path does not apply: the "general path".
//    Same operations in the same order; results differ from the GPU's only by the exp()
//    implementation (a polynomial for float packs) and by compiler contraction into FMAs.
//  - The CPU fast path (bi_wkv_cpu_fast.h: bidirectional, fp32 math, short chunks relative
//    to the decay) replaces the chunk walks (chunk_summary, chunk_forward, chunk_backward_*)
//    of its items with one-exp-per-token code of its own. It shares with the core only the
//    State format, the frame helpers (left_into_chunk, left_at, ...), CarryView and the
//    carry scan between chunks (item_carry), which always runs here.
//  - Not shared: scheduling (CUDA threads vs. torch's thread pool), the exp() of each
//    device, and the host code (bi_wkv.h: checks, Dims, buffer allocation, constants).
//
// Templates: V is the value type (float or double on the GPU, a Pack of channels on the CPU),
// T the storage type of k, v, y (float, double, half, bfloat16). Loads and stores go through
// Io<V>; the elementwise helpers (ex, vmax, vabs, select_ge) are defined here for scalars and
// found by argument-dependent lookup for the CPU's Pack type (kernels/bi_wkv_cpu_pack.h).
#pragma once
#include <math.h>

#if defined(__CUDACC__)
#define BIWKV_HD __host__ __device__ __forceinline__
#else
// Force-inlined on the host too: the CPU kernel relies on the whole chunk walk collapsing
// into one function so that packs stay in registers.
#define BIWKV_HD inline __attribute__((always_inline))
#endif

namespace biwkv {

// ---- scalar helpers (the GPU path; the CPU pack overloads live beside the Pack type) ----
BIWKV_HD float ex(float x) { return expf(x); }
BIWKV_HD double ex(double x) { return exp(x); }
BIWKV_HD float vmax(float a, float b) { return a > b ? a : b; }
BIWKV_HD double vmax(double a, double b) { return a > b ? a : b; }
BIWKV_HD float vabs(float a) { return fabsf(a); }
BIWKV_HD double vabs(double a) { return fabs(a); }
BIWKV_HD float select_ge(float p, float q, float a, float b) { return p >= q ? a : b; }
BIWKV_HD double select_ge(double p, double q, double a, double b) { return p >= q ? a : b; }

// Loads/stores of one value of storage type T as V (lanes is only used by packs).
template <class V> struct Io {
  template <class T> BIWKV_HD static V ld(const T* p, int) { return static_cast<V>(*p); }
  template <class T> BIWKV_HD static void st(T* p, V x, int) { *p = static_cast<T>(x); }
};

// "Empty sum" exponent: exp(kEmpty - anything finite) == 0, and kEmpty - x stays finite.
template <class A> struct Empty;
template <> struct Empty<float> { static constexpr float value = -1e38f; };
template <> struct Empty<double> { static constexpr double value = -1e300; };

// A running sum of (n, d) * exp(o); dn, dd are the derivatives w.r.t. w (used when DW).
template <class V> struct State {
  V n, d, dn, dd, o;
};

template <class V, class S> BIWKV_HD State<V> empty_state() {
  State<V> s;
  s.n = V(S(0)); s.d = V(S(0)); s.dn = V(S(0)); s.dd = V(S(0)); s.o = V(Empty<S>::value);
  return s;
}

// The two factors exp(p - max(p, q)) and exp(q - max(p, q)) with a single exp().
template <class V> BIWKV_HD void rescale_pair(V p, V q, V& ep, V& eq, V& m) {
  m = vmax(p, q);
  V e = ex(-vabs(p - q));
  ep = select_ge(p, q, V(1.0f), e);
  eq = select_ge(p, q, e, V(1.0f));
}

// s += (a, b) * exp(ls); with DW the term's w-derivative is -dist * (a, b) * exp(ls)
// (a weight exp(-dist * w + ...)).
template <bool DW, class V> BIWKV_HD void absorb(State<V>& s, V ls, V a, V b, V dist) {
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
template <bool DW, class V> BIWKV_HD void decay(State<V>& s, V w, V len) {
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
template <bool DW, class V> BIWKV_HD void add_left(State<V>& f, V w, int i, V ls, V a, V b) {
  absorb<DW>(f, ls + V(float(i)) * w, a, b, V(float(-i)));
}
template <bool DW, class V> BIWKV_HD void add_right(State<V>& f, V w, int i, V ls, V a, V b) {
  absorb<DW>(f, ls - V(float(i)) * w, a, b, V(float(i)));
}
template <bool DW, class V> BIWKV_HD State<V> left_at(State<V> f, V w, int t) {
  decay<DW>(f, w, V(float(t - 1)));
  return f;
}
template <bool DW, class V> BIWKV_HD State<V> right_at(State<V> f, V w, int t) {
  decay<DW>(f, w, V(float(-(t + 1))));
  return f;
}

// s <- s + x (both sums anchored at the same position).
template <bool DW, class V> BIWKV_HD void merge(State<V>& s, const State<V>& x) {
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

template <class V> BIWKV_HD Out<V> combine(const State<V>& L, const State<V>& R, V ls_bonus, V v) {
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
BIWKV_HD void chunk_summary(const T* k, const T* v, I ts, int len, V w, int lanes,
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
BIWKV_HD void carry_scan(const View& acc, int nch, int chunk_len, V w, bool left_dir, bool right_dir) {
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
template <bool DW, class V> BIWKV_HD State<V> left_into_chunk(State<V> g, V w, V s0) {
  decay<DW>(g, w, s0);
  return g;
}
template <bool DW, class V> BIWKV_HD State<V> right_into_chunk(State<V> g, V w, V s0) {
  decay<DW>(g, w, -s0);
  return g;
}

// Forward walk of one chunk starting at token s0, given the carries (global frame).
// `buf` holds len States (scratch).
template <class V, class T, class I>
BIWKV_HD void chunk_forward(const T* k, const T* v, T* y, I ts, int len, V w, V u, V s0, int lanes,
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
BIWKV_HD void chunk_backward_stats(const T* k, const T* v, const T* g, I ts, int len, V w, V u,
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
BIWKV_HD void chunk_backward_kv(const T* k, const T* v, const T* g, T* gk, T* gv, I ts, int len,
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
// loop iteration (CPU, c0 a multiple of the pack width) and call these (the CPU fast path
// has its own item functions for phases 1, 3 and 5, in bi_wkv_cpu_fast.h); the drivers only
// allocate buffers, schedule and launch.
// Layouts: k, v, g, y, gk, gv [B, T, C] contiguous; w, u [C] in the accumulation type A;
// carries [B, nch, 2 (left, right), F, C] of A and gw/gu partials [B, nch, C] of A (both
// allocated by bi_wkv.h: carry_buffer, partial_sums).
// ---------------------------------------------------------------------------------------

typedef long long i64;

struct Dims {
  i64 B, T, C;
  int chunk_len, nch;
  bool causal;
  BIWKV_HD int chunk_size(int j) const {
    i64 s = (i64)j * chunk_len;
    return (int)(s + chunk_len <= T ? chunk_len : T - s);
  }
  BIWKV_HD float chunk_start(int j) const { return float(j) * float(chunk_len); }
  BIWKV_HD i64 token0(i64 b, int j, i64 c0) const { return (b * T + (i64)j * chunk_len) * C + c0; }
};

// Fields per State in a carry buffer: with w-derivatives (n, d, dn, dd, o; the backward
// pass's forward sums) or without (n, d, o). bi_wkv.h's carry_buffer() allocates them.
constexpr int kFieldsDW = 5;
constexpr int kFieldsPlain = 3;

// View of one (batch, channel pack) column of a carry buffer with F fields per State
// (F = kFieldsDW or kFieldsPlain).
template <class V, class A, int F> struct CarryView {
  typedef A scalar;
  A* p;  // element (b, chunk 0, left, field 0, c0)
  i64 C;
  int lanes;
  BIWKV_HD A* at(int j, int dir, int f) const { return p + (((i64)j * 2 + dir) * F + f) * C; }
  BIWKV_HD State<V> load(int j, int dir) const {
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
  BIWKV_HD void store(int j, int dir, const State<V>& s) const {
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
BIWKV_HD CarryView<V, A, F> carry_view(const Dims& d, A* buf, i64 b, i64 c0, int lanes) {
  CarryView<V, A, F> cv;
  cv.p = buf + b * d.nch * 2 * F * d.C + c0;
  cv.C = d.C;
  cv.lanes = lanes;
  return cv;
}

// Phase 1: summaries of chunk j into the carry buffer.
template <bool DW, int F, class V, class T, class A>
BIWKV_HD void item_summary(const Dims& d, const T* k, const T* v, const A* w, A* carry, i64 b,
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
BIWKV_HD void item_carry(const Dims& d, const A* w, A* carry, i64 b, i64 c0, int lanes,
                         bool left_dir, bool right_dir) {
  CarryView<V, A, F> cv = carry_view<V, A, F>(d, carry, b, c0, lanes);
  carry_scan<DW>(cv, d.nch, d.chunk_len, Io<V>::ld(w + c0, lanes), left_dir, right_dir);
}

// Phase 3 (forward): y for chunk j. buf: chunk_len States.
template <int F, class V, class T, class A>
BIWKV_HD void item_forward(const Dims& d, const T* k, const T* v, T* y, const A* w, const A* u,
                           A* carry, i64 b, int j, i64 c0, int lanes, State<V>* buf) {
  CarryView<V, A, F> cv = carry_view<V, A, F>(d, carry, b, c0, lanes);
  i64 o = d.token0(b, j, c0);
  chunk_forward(k + o, v + o, y + o, d.C, d.chunk_size(j), Io<V>::ld(w + c0, lanes),
                Io<V>::ld(u + c0, lanes), V(d.chunk_start(j)), lanes, cv.load(j, 0), cv.load(j, 1), buf, d.causal);
}

// Backward phase 3: gw/gu partials of chunk j and backward-scan summaries. buf: chunk_len States.
template <class V, class T, class A>
BIWKV_HD void item_backward_stats(const Dims& d, const T* k, const T* v, const T* g, const A* w,
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
BIWKV_HD void item_backward_kv(const Dims& d, const T* k, const T* v, const T* g, T* gk, T* gv,
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

}  // namespace biwkv
