// A fixed-width pack of channels for the CPU kernel: the Bi-WKV core (bi_wkv_core.h) runs
// on Pack<A, W> exactly as the GPU runs it on one float, so W neighbouring channels are
// processed by the same instruction stream. The pack wraps a GCC/Clang vector-extension type,
// so every operator is one SIMD instruction (a zmm register for Pack<float, 16> with AVX-512)
// instead of a loop the auto-vectoriser may or may not handle; exp() for float is a
// branch-free polynomial on the whole vector (libm's expf does not vectorise).
// Everything is force-inlined: out-of-line pack operators pass 64-byte packs through memory
// (and, in a shared object, through the PLT), which made the kernel ~30x slower.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "bi_wkv_core.h"

#define BIWKV_PINL inline __attribute__((always_inline))

namespace biwkv {

// The CPU pack width, in bytes: one 64-byte vector (an AVX-512 register, two AVX2 or four
// NEON registers). Every pack width of the CPU kernel derives from it: 16 floats, 8 doubles.
constexpr int kPackBytes = 64;

template <class A, int W> struct Pack {
  typedef A vec __attribute__((vector_size(sizeof(A) * W)));
  vec x;
  Pack() = default;
  BIWKV_PINL Pack(vec v) : x(v) {}
  BIWKV_PINL Pack(float s) : x(vec{} + A(s)) {}  // NOLINT: broadcast, used as V(1.0f) by the core
  BIWKV_PINL Pack(double s) : x(vec{} + A(s)) {}  // NOLINT
};

#define BIWKV_PACK_BINOP(OP)                                                           \
  template <class A, int W>                                                            \
  BIWKV_PINL Pack<A, W> operator OP(const Pack<A, W>& a, const Pack<A, W>& b) {        \
    return Pack<A, W>(a.x OP b.x);                                                     \
  }
BIWKV_PACK_BINOP(+)
BIWKV_PACK_BINOP(-)
BIWKV_PACK_BINOP(*)
BIWKV_PACK_BINOP(/)
#undef BIWKV_PACK_BINOP

template <class A, int W> BIWKV_PINL Pack<A, W> operator-(const Pack<A, W>& a) { return Pack<A, W>(-a.x); }

template <class A, int W> BIWKV_PINL Pack<A, W> vmax(const Pack<A, W>& a, const Pack<A, W>& b) {
  return Pack<A, W>(a.x > b.x ? a.x : b.x);
}

template <class A, int W> BIWKV_PINL Pack<A, W> vabs(const Pack<A, W>& a) {
  return Pack<A, W>(a.x < A(0) ? -a.x : a.x);
}

template <class A, int W>
BIWKV_PINL Pack<A, W> select_ge(const Pack<A, W>& p, const Pack<A, W>& q, const Pack<A, W>& a,
                                const Pack<A, W>& b) {
  return Pack<A, W>(p.x >= q.x ? a.x : b.x);
}

// exp(x) for W floats, relative error ~1e-7 over the whole range: x = n ln2 + r, |r| <= ln2/2,
// exp(r) by a degree-6 polynomial (Cephes expf coefficients), 2^n assembled in the exponent
// bits. Returns 0 below -87 (the core's "empty" exponents), +inf above 88.5, NaN for NaN.
// n = round(x / ln2) uses the 1.5 * 2^23 trick (exact for |x / ln2| < 2^22), so the whole
// function is compares, blends, FMAs and integer shifts on vectors.
// kNonPositive: the caller guarantees x <= 0 or NaN (the fast path's per-token exponents,
// all relative to a maximum), which drops the overflow clamp and blends (NaN still propagates
// through the polynomial).
template <bool kNonPositive, int W> BIWKV_PINL Pack<float, W> ex_body(const Pack<float, W>& a) {
  typedef typename Pack<float, W>::vec vf;
  typedef int32_t vi __attribute__((vector_size(sizeof(int32_t) * W)));
  const vf x = a.x;
  const vf lo = vf{} - 87.0f, hi = vf{} + 88.0f;
  vf xc = x < lo ? lo : x;
  if (!kNonPositive) xc = xc > hi ? hi : xc;
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  vf fn = (xc * 1.44269504088896341f + magic) - magic;
  vf r = xc - fn * 0.693359375f + fn * 2.12194440e-4f;
  vf p = vf{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  vi n = __builtin_convertvector(fn, vi);
  vi bits = (n + 127) << 23;
  vf res = p * (vf)bits;  // same-size vector cast: reinterprets the bits
  res = x < lo ? vf{} : res;
  if (!kNonPositive) {
    res = x > 88.5f ? vf{} + INFINITY : res;
    res = x != x ? x : res;
  }
  return Pack<float, W>(res);
}

template <int W> BIWKV_PINL Pack<float, W> ex(const Pack<float, W>& a) { return ex_body<false>(a); }

// ex() for x <= 0 (or NaN) only; see ex_body.
template <int W> BIWKV_PINL Pack<float, W> ex_nonpositive(const Pack<float, W>& a) {
  return ex_body<true>(a);
}

// 1 / b for the fast forward's outputs y = num * reciprocal(den): with AVX-512, the 14-bit
// reciprocal estimate refined by one Newton step (relative error ~2^-23; the quotient is
// within ~1.5 ulp), which runs in the FMA pipes instead of the long-latency divider;
// elsewhere a plain division. The backward keeps true divisions: its gw sums the quotients
// of a whole sequence and sits closer to its test bound.
template <int W> BIWKV_PINL Pack<float, W> reciprocal(const Pack<float, W>& b) {
#if defined(__AVX512F__)
  if constexpr (W == 16) {
    typedef typename Pack<float, W>::vec vf;
    const vf r0 = (vf)_mm512_maskz_rcp14_ps((__mmask16)0xFFFF, (__m512)b.x);
    return Pack<float, W>(r0 + r0 * (1.0f - b.x * r0));
  }
#endif
  return Pack<float, W>(1.0f) / b;
}

template <int W> BIWKV_PINL Pack<double, W> ex(const Pack<double, W>& a) {
  Pack<double, W> r;
  for (int i = 0; i < W; ++i) r.x[i] = std::exp(a.x[i]);
  return r;
}

// Channels per pack and the pack type of the accumulation type A (float or double).
template <class A> constexpr int kPackWidth = kPackBytes / int(sizeof(A));
template <class A> using PackOf = Pack<A, kPackWidth<A>>;

// Loads/stores of `lanes` (<= W) consecutive channels; missing lanes read as 0.
template <class A, int W> struct Io<Pack<A, W>> {
  template <class T> BIWKV_PINL static Pack<A, W> ld(const T* p, int lanes) {
    Pack<A, W> r;
    if constexpr (std::is_same<T, A>::value) {  // same type: one (unaligned) vector load
      if (lanes == W) {
        std::memcpy(&r.x, p, sizeof(r.x));
        return r;
      }
    }
    if (lanes == W) {
      for (int i = 0; i < W; ++i) r.x[i] = static_cast<A>(p[i]);
    } else {
      for (int i = 0; i < W; ++i) r.x[i] = i < lanes ? static_cast<A>(p[i]) : A(0);
    }
    return r;
  }
  template <class T> BIWKV_PINL static void st(T* p, const Pack<A, W>& x, int lanes) {
    if constexpr (std::is_same<T, A>::value) {
      if (lanes == W) {
        std::memcpy(p, &x.x, sizeof(x.x));
        return;
      }
    }
    for (int i = 0; i < lanes; ++i) p[i] = static_cast<T>(x.x[i]);
  }
};

}  // namespace biwkv
