// The value-type interface the numerical cores (<op>/core.h) are written against, for the
// scalar value types float and double (one channel: the CUDA threads, the CPU's leftover
// channels). The CPU's SIMD type Pack<A, W> (common/simd.h) provides the same functions,
// found by argument-dependent lookup, so one core function serves both:
//   ex(x), ex_nonpositive(x), vmax(a, b), vabs(a), select_ge(p, q, a, b), reciprocal(b),
//   Io<V>::ld / Io<V>::st (loads and stores of storage type T as V), kLanesOf<V>.
// KERNELS_HD marks every core function: __host__ __device__ for nvcc, force-inlined on the
// host (the CPU drivers rely on whole walks collapsing into one function so that packs stay
// in registers).
#pragma once
#include <math.h>

#if defined(__CUDACC__)
#define KERNELS_HD __host__ __device__ __forceinline__
#else
#define KERNELS_HD inline __attribute__((always_inline))
#endif

namespace kernels {

KERNELS_HD float ex(float x) { return expf(x); }
KERNELS_HD double ex(double x) { return exp(x); }
// ex() for x <= 0 (or NaN) only; the packs drop a clamp there (common/simd.h).
KERNELS_HD float ex_nonpositive(float x) { return expf(x); }
KERNELS_HD float vmax(float a, float b) { return a > b ? a : b; }
KERNELS_HD double vmax(double a, double b) { return a > b ? a : b; }
KERNELS_HD float vabs(float a) { return fabsf(a); }
KERNELS_HD double vabs(double a) { return fabs(a); }
KERNELS_HD float select_ge(float p, float q, float a, float b) { return p >= q ? a : b; }
KERNELS_HD double select_ge(double p, double q, double a, double b) { return p >= q ? a : b; }
KERNELS_HD float reciprocal(float b) { return 1.0f / b; }
// Whether every one of the first `lanes` values of x is <= bound (false for NaN).
KERNELS_HD bool all_le(float x, float bound, int) { return x <= bound; }

// a * x + b * y with a * x formed first, so that its product is the one fused into an FMA
// on every value type (packs evaluate operator operands right to left: common/simd.h).
template <class P, class X, class Q, class Y> KERNELS_HD auto muladd2(P a, X x, Q b, Y y) {
  const auto ax = a * x;
  const auto by = b * y;
  return ax + by;
}

// Channels per value: 1 for a scalar (Pack<A, W>: W).
template <class V> constexpr int kLanesOf = 1;

// Loads/stores of one value of storage type T as V (lanes is only used by packs).
template <class V> struct Io {
  template <class T> KERNELS_HD static V ld(const T* p, int) { return static_cast<V>(*p); }
  template <class T> KERNELS_HD static void st(T* p, V x, int) { *p = static_cast<T>(x); }
};

}  // namespace kernels
