// A fixed-width pack of channels for the CPU kernel: the Bi-WKV core (bi_wkv_core.h) runs
// on Pack<A, W> exactly as the GPU runs it on one float, so W neighbouring channels are
// processed by the same instruction stream. All operations are plain loops over the lanes
// that the compiler turns into SIMD code; exp() for float is a branch-free polynomial so it
// vectorises too (libm's expf does not).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace biwkv {

template <class A, int W> struct Pack {
  A x[W];
  Pack() = default;
  Pack(float s) {  // NOLINT: broadcast, used as V(1.0f) by the core
    for (int i = 0; i < W; ++i) x[i] = A(s);
  }
  Pack(double s) {  // NOLINT
    for (int i = 0; i < W; ++i) x[i] = A(s);
  }
};

#define BIWKV_PACK_BINOP(OP)                                             \
  template <class A, int W>                                              \
  inline Pack<A, W> operator OP(const Pack<A, W>& a, const Pack<A, W>& b) { \
    Pack<A, W> r;                                                        \
    for (int i = 0; i < W; ++i) r.x[i] = a.x[i] OP b.x[i];               \
    return r;                                                            \
  }
BIWKV_PACK_BINOP(+)
BIWKV_PACK_BINOP(-)
BIWKV_PACK_BINOP(*)
BIWKV_PACK_BINOP(/)
#undef BIWKV_PACK_BINOP

template <class A, int W> inline Pack<A, W> operator-(const Pack<A, W>& a) {
  Pack<A, W> r;
  for (int i = 0; i < W; ++i) r.x[i] = -a.x[i];
  return r;
}

template <class A, int W> inline Pack<A, W> vmax(const Pack<A, W>& a, const Pack<A, W>& b) {
  Pack<A, W> r;
  for (int i = 0; i < W; ++i) r.x[i] = a.x[i] > b.x[i] ? a.x[i] : b.x[i];
  return r;
}

template <class A, int W> inline Pack<A, W> vabs(const Pack<A, W>& a) {
  Pack<A, W> r;
  for (int i = 0; i < W; ++i) r.x[i] = a.x[i] < A(0) ? -a.x[i] : a.x[i];
  return r;
}

template <class A, int W>
inline Pack<A, W> select_ge(const Pack<A, W>& p, const Pack<A, W>& q, const Pack<A, W>& a,
                            const Pack<A, W>& b) {
  Pack<A, W> r;
  for (int i = 0; i < W; ++i) r.x[i] = p.x[i] >= q.x[i] ? a.x[i] : b.x[i];
  return r;
}

// exp(x) for float, relative error ~1e-7 over the whole range: x = n ln2 + r, |r| <= ln2/2,
// exp(r) by a degree-6 polynomial (Cephes expf coefficients), 2^n assembled in the exponent
// bits. Returns 0 below -87.3 (the core's "empty" exponents), +inf above 88.7, NaN for NaN.
inline float exp_poly(float x) {
  float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  float fx = xc * 1.44269504088896341f;
  int n = (int)(fx + (fx >= 0.0f ? 0.5f : -0.5f));
  float fn = (float)n;
  float r = xc - fn * 0.693359375f + fn * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = (n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  float res = p * scale;
  res = x < -87.0f ? 0.0f : res;
  res = x > 88.5f ? INFINITY : res;
  return x != x ? x : res;
}

template <int W> inline Pack<float, W> ex(const Pack<float, W>& a) {
  Pack<float, W> r;
  for (int i = 0; i < W; ++i) r.x[i] = exp_poly(a.x[i]);
  return r;
}

template <int W> inline Pack<double, W> ex(const Pack<double, W>& a) {
  Pack<double, W> r;
  for (int i = 0; i < W; ++i) r.x[i] = std::exp(a.x[i]);
  return r;
}

// Loads/stores of `lanes` (<= W) consecutive channels; missing lanes read as 0.
template <class A, int W> struct Io<Pack<A, W>> {
  template <class T> static Pack<A, W> ld(const T* p, int lanes) {
    Pack<A, W> r;
    if (lanes == W) {
      for (int i = 0; i < W; ++i) r.x[i] = static_cast<A>(p[i]);
    } else {
      for (int i = 0; i < W; ++i) r.x[i] = i < lanes ? static_cast<A>(p[i]) : A(0);
    }
    return r;
  }
  template <class T> static void st(T* p, const Pack<A, W>& x, int lanes) {
    for (int i = 0; i < lanes; ++i) p[i] = static_cast<T>(x.x[i]);
  }
};

}  // namespace biwkv
