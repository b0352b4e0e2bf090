// The CPU's one SIMD type: Pack<A, W>, W channels of accumulation type A (float or double)
// in one GCC/Clang vector-extension value. The numerical cores (<op>/core.h) run on it
// exactly as the GPU runs them on one scalar (common/value.h has the scalar side of the same
// interface), so W neighbouring channels are processed by one instruction stream. Every
// operator is one SIMD instruction (a zmm register for Pack<float, 16> with AVX-512) instead
// of a loop the auto-vectoriser may or may not handle; exp() for float is a branch-free
// polynomial on the whole vector (libm's expf does not vectorise).
// Everything is force-inlined: out-of-line pack operators pass 64-byte packs through memory
// (and, in a shared object, through the PLT), which made the Bi-WKV kernel ~30x slower.
//
// Width rule (one for every op): kPackBytes = 64 bytes, whatever the build target. On
// AVX-512 that is one register; on AVX2 two and on SSE / NEON four, which the compiler
// splits. Why fixed rather than the target's register width: the width decides which
// channels share a pack (Bi-WKV's fast path is chosen per pack; Bi-WKV6 runs the channels
// past the last full pack of a head on the scalar core), so a width that follows the target
// would make results depend on the build machine's instruction set. With a fixed width the
// results of a call depend only on the compiler's contraction into FMAs, and
// mmvrwkv._ext.cpu_pack_width is the same on every machine.
//
// Evaluation order: GCC evaluates the operands of an overloaded operator right to left, so
// in `a * x + b * y` on packs the right product comes first and is the one not fused into
// the FMA (built-in scalar and vector types: the left one). Core code that must round alike
// on both forms a sum of two products with muladd2() (below), which fixes the order.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "common/value.h"

#define KERNELS_PINL inline __attribute__((always_inline))

// Packs are passed only between force-inlined functions, so GCC's note that returning a
// vector wider than the target's registers changes the calling convention (-Wpsabi, builds
// without AVX-512) concerns no ABI.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace kernels {

// The pack width, in bytes (the width rule above): 16 floats, 8 doubles.
constexpr int kPackBytes = 64;

template <class A, int W> struct Pack {
  typedef A vec __attribute__((vector_size(sizeof(A) * W)));
  vec x;
  Pack() = default;
  KERNELS_PINL Pack(vec v) : x(v) {}
  KERNELS_PINL Pack(float s) : x(vec{} + A(s)) {}  // NOLINT: broadcast, used as V(1.0f) by the core
  KERNELS_PINL Pack(double s) : x(vec{} + A(s)) {}  // NOLINT
};

#define KERNELS_PACK_BINOP(OP)                                                           \
  template <class A, int W>                                                            \
  KERNELS_PINL Pack<A, W> operator OP(const Pack<A, W>& a, const Pack<A, W>& b) {        \
    return Pack<A, W>(a.x OP b.x);                                                     \
  }
KERNELS_PACK_BINOP(+)
KERNELS_PACK_BINOP(-)
KERNELS_PACK_BINOP(*)
KERNELS_PACK_BINOP(/)
// Scalar and pack: the scalar is broadcast (as GCC does for a scalar and a vector).
#define KERNELS_PACK_SCALAR_BINOP(OP)                                                  \
  template <class A, int W>                                                            \
  KERNELS_PINL Pack<A, W> operator OP(A a, const Pack<A, W>& b) {                      \
    return Pack<A, W>(a OP b.x);                                                       \
  }                                                                                    \
  template <class A, int W>                                                            \
  KERNELS_PINL Pack<A, W> operator OP(const Pack<A, W>& a, A b) {                      \
    return Pack<A, W>(a.x OP b);                                                       \
  }
KERNELS_PACK_SCALAR_BINOP(+)
KERNELS_PACK_SCALAR_BINOP(*)
#undef KERNELS_PACK_SCALAR_BINOP
#undef KERNELS_PACK_BINOP

template <class A, int W> KERNELS_PINL Pack<A, W> operator-(const Pack<A, W>& a) { return Pack<A, W>(-a.x); }

template <class A, int W> KERNELS_PINL Pack<A, W> vmax(const Pack<A, W>& a, const Pack<A, W>& b) {
  return Pack<A, W>(a.x > b.x ? a.x : b.x);
}

template <class A, int W> KERNELS_PINL Pack<A, W> vabs(const Pack<A, W>& a) {
  return Pack<A, W>(a.x < A(0) ? -a.x : a.x);
}

template <class A, int W>
KERNELS_PINL Pack<A, W> select_ge(const Pack<A, W>& p, const Pack<A, W>& q, const Pack<A, W>& a,
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
template <bool kNonPositive, int W> KERNELS_PINL Pack<float, W> ex_body(const Pack<float, W>& a) {
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

template <int W> KERNELS_PINL Pack<float, W> ex(const Pack<float, W>& a) { return ex_body<false>(a); }

// ex() for x <= 0 (or NaN) only; see ex_body.
template <int W> KERNELS_PINL Pack<float, W> ex_nonpositive(const Pack<float, W>& a) {
  return ex_body<true>(a);
}

// 1 / b for the fast forward's outputs y = num * reciprocal(den): with AVX-512, the 14-bit
// reciprocal estimate refined by one Newton step (relative error ~2^-23; the quotient is
// within ~1.5 ulp), which runs in the FMA pipes instead of the long-latency divider;
// elsewhere a plain division. The backward keeps true divisions: its gw sums the quotients
// of a whole sequence and sits closer to its test bound.
template <int W> KERNELS_PINL Pack<float, W> reciprocal(const Pack<float, W>& b) {
#if defined(__AVX512F__)
  if constexpr (W == 16) {
    typedef typename Pack<float, W>::vec vf;
    const vf r0 = (vf)_mm512_maskz_rcp14_ps((__mmask16)0xFFFF, (__m512)b.x);
    return Pack<float, W>(r0 + r0 * (1.0f - b.x * r0));
  }
#endif
  return Pack<float, W>(1.0f) / b;
}

template <int W> KERNELS_PINL Pack<double, W> ex(const Pack<double, W>& a) {
  Pack<double, W> r;
  for (int i = 0; i < W; ++i) r.x[i] = std::exp(a.x[i]);
  return r;
}

// Channels per pack and the pack type of the accumulation type A (float or double).
template <class A> constexpr int kPackWidth = kPackBytes / int(sizeof(A));
template <class A> using PackOf = Pack<A, kPackWidth<A>>;
template <class A, int W> constexpr int kLanesOf<Pack<A, W>> = W;

// Whether each of the first `lanes` channels of x is <= bound (false for NaN).
template <int W> KERNELS_PINL bool all_le(const Pack<float, W>& x, float bound, int lanes) {
  for (int i = 0; i < lanes; ++i)
    if (!(x.x[i] <= bound)) return false;
  return true;
}

// Loads/stores of `lanes` (<= W) consecutive channels; missing lanes read as 0.
template <class A, int W> struct Io<Pack<A, W>> {
  template <class T> KERNELS_PINL static Pack<A, W> ld(const T* p, int lanes) {
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
  template <class T> KERNELS_PINL static void st(T* p, const Pack<A, W>& x, int lanes) {
    if constexpr (std::is_same<T, A>::value) {
      if (lanes == W) {
        std::memcpy(p, &x.x, sizeof(x.x));
        return;
      }
    }
    for (int i = 0; i < lanes; ++i) p[i] = static_cast<T>(x.x[i]);
  }
};

}  // namespace kernels
