// Host-side code shared by the Bi-WKV6 binding and its CPU / CUDA drivers: the input checks
// every entry point runs (the Python front, mmvrwkv/ops/bi_wkv6, checks first with friendlier
// messages; these keep direct torch.ops callers away from bad pointers), the Dims of a call,
// the A-typed decay arrays both drivers precompute and the entry points Op<D>.
#pragma once
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/prod.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <tuple>

#include "bi_wkv6/core.h"
#include "bi_wkv6/params.h"
#include "common/host.h"

namespace biwkv6 {

using kernels::Device;

inline void check_inputs(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& w, const at::Tensor& u, bool cuda) {
  TORCH_CHECK(r.dim() == 3, "bi_wkv6: r must be [B, T, C], got ", r.sizes());
  for (const auto* t : {&k, &v, &w})
    TORCH_CHECK(t->sizes() == r.sizes(), "bi_wkv6: k, v and w must have r's shape ", r.sizes(),
                ", got ", t->sizes());
  TORCH_CHECK(k.scalar_type() == r.scalar_type() && v.scalar_type() == r.scalar_type(),
              "bi_wkv6: k and v must have r's dtype");
  TORCH_CHECK(u.dim() == 2 && u.size(0) * u.size(1) == r.size(2) && u.size(1) >= 1,
              "bi_wkv6: u must be [H, N] with H * N = C = ", r.size(2), ", got ", u.sizes());
  for (const auto* t : {&r, &k, &v, &w, &u}) {
    TORCH_CHECK(at::isFloatingType(t->scalar_type()), "bi_wkv6: inputs must be floating point");
    TORCH_CHECK(t->is_contiguous(), "bi_wkv6: inputs must be contiguous");
    TORCH_CHECK(t->device() == r.device(), "bi_wkv6: all inputs must be on ", r.device());
    TORCH_CHECK(t->is_cuda() == cuda, "bi_wkv6: wrong device for this kernel");
  }
  TORCH_CHECK(r.size(1) < (int64_t(1) << 31), "bi_wkv6: T must be < 2^31");
}

inline void check_grad(const at::Tensor& gy, const at::Tensor& r) {
  TORCH_CHECK(gy.sizes() == r.sizes() && gy.scalar_type() == r.scalar_type() &&
                  gy.device() == r.device() && gy.is_contiguous(),
              "bi_wkv6: grad_y must match y (shape ", r.sizes(), ", dtype, device, contiguous)");
}

inline Dims make_dims(const at::Tensor& r, const at::Tensor& u) {
  Dims d;
  d.B = r.size(0);
  d.T = r.size(1);
  d.C = r.size(2);
  d.H = (int)u.size(0);
  d.N = (int)u.size(1);
  d.ck_len = checkpoint_len(d.T);
  d.nck = (int)((d.T + d.ck_len - 1) / d.ck_len);
  return d;
}

// Decays d = exp(-exp(w)) and ew = exp(w) in the math type (both [B, T, C]), u as A.
// w is clamped at 30 first: d is exactly 0 from w ~ 6.6 on either way, and a finite ew keeps
// the backward's gw = -ew * (...) at 0 instead of -inf * 0 = NaN (fp32 from w > 88.7).
struct Decays {
  at::Tensor dec, ew, u;
};

inline Decays decays(const at::Tensor& w, const at::Tensor& u, at::ScalarType math) {
  Decays out;
  out.ew = at::exp(w.to(math).clamp_max(30.0)).contiguous();
  out.dec = at::exp(-out.ew).contiguous();
  out.u = u.to(math).contiguous();
  return out;
}

// D [B, nck, C]: the product of the decays of each checkpoint chunk (the factor by which a
// state crosses the chunk; column_carry in core.h).
inline at::Tensor chunk_decays(const at::Tensor& dec, const Dims& d) {
  auto padded = at::ones({d.B, (i64)d.nck * d.ck_len, d.C}, dec.options());
  padded.narrow(1, 0, d.T).copy_(dec);
  return padded.view({d.B, d.nck, d.ck_len, d.C}).prod(2).contiguous();
}

// Gradients in the math type A: gr, gk, gv, gw [B, T, C] and the per-batch parts of gu
// [B, H, N] (a driver's result; dispatch.h converts them to the inputs' dtypes).
struct GradsA {
  at::Tensor gr, gk, gv, gw, gu;
};

// The gradients of a call in the math type `opt`: gr, gk, gv, gw uninitialised (the drivers
// write every element), gu zero-filled (a call with T = 0 writes none of it).
inline GradsA empty_grads(const Dims& d, const at::Tensor& r, const at::TensorOptions& opt) {
  GradsA g;
  g.gr = at::empty(r.sizes(), opt);
  g.gk = at::empty(r.sizes(), opt);
  g.gv = at::empty(r.sizes(), opt);
  g.gw = at::empty(r.sizes(), opt);
  g.gu = at::zeros({d.B, d.H, d.N}, opt);
  return g;
}

// What a driver provides (cpu.cpp: Driver<Device::kCpu>, cuda.cu: Driver<Device::kCuda>):
//   Guard, kOnCuda               from kernels::CpuDriver / kernels::CudaDriver
//   forward<T, A>(d, r, k, v, w, u, y)       y [B, T, C] in A (empty_like)
//   backward<T, A>(d, r, k, v, w, u, gy, g)  g from empty_grads
template <Device D> struct Driver;

using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;  // gr gk gv gw gu

// The entry points torch.ops.mmvrwkv.bi_wkv6_forward / _backward of device D (defined once
// for both devices in dispatch.h, instantiated by each driver).
template <Device D> struct Op {
  static at::Tensor forward(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& w, const at::Tensor& u);
  static Grads backward(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                        const at::Tensor& w, const at::Tensor& u, const at::Tensor& gy);
};

}  // namespace biwkv6
