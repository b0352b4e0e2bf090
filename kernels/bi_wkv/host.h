// Host-side code shared by the Bi-WKV bindings and the CPU / CUDA drivers: the input checks
// every entry point runs (the Python front checks first, with friendlier messages; these keep
// direct torch.ops callers from reaching a kernel with bad pointers), the Dims of a call, the
// allocation of its scratch buffers and the entry points Op<D>.
// Only ATen headers (not torch/extension.h, 2x the lines, which every nvcc pass re-parses).
#pragma once
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <tuple>
#include <vector>

#include "bi_wkv/core.h"
#include "bi_wkv/params.h"
#include "common/host.h"

namespace biwkv {

using kernels::Device;

inline void check_inputs(const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
                         const at::Tensor& v, int64_t chunk_len, bool cuda) {
  TORCH_CHECK(k.dim() == 3, "bi_wkv: k must be [B, T, C], got ", k.sizes());
  TORCH_CHECK(v.sizes() == k.sizes(), "bi_wkv: v must have k's shape ", k.sizes(), ", got ", v.sizes());
  TORCH_CHECK(v.scalar_type() == k.scalar_type(), "bi_wkv: v must have k's dtype");
  TORCH_CHECK(at::isFloatingType(k.scalar_type()), "bi_wkv: k must be floating point");
  TORCH_CHECK(w.dim() == 1 && w.size(0) == k.size(2), "bi_wkv: w must be [C] with C = ", k.size(2));
  TORCH_CHECK(u.dim() == 1 && u.size(0) == k.size(2), "bi_wkv: u must be [C] with C = ", k.size(2));
  TORCH_CHECK(at::isFloatingType(w.scalar_type()) && at::isFloatingType(u.scalar_type()),
              "bi_wkv: w and u must be floating point");
  TORCH_CHECK(k.is_contiguous() && v.is_contiguous(), "bi_wkv: k and v must be contiguous");
  TORCH_CHECK(chunk_len >= 1, "bi_wkv: chunk_len must be >= 1, got ", chunk_len);
  for (const auto* t : {&w, &u, &k, &v}) {
    TORCH_CHECK(t->device() == k.device(), "bi_wkv: all inputs must be on ", k.device());
    TORCH_CHECK(t->is_cuda() == cuda, "bi_wkv: wrong device for this kernel");
  }
}

inline void check_grad(const at::Tensor& gy, const at::Tensor& k) {
  TORCH_CHECK(gy.sizes() == k.sizes() && gy.scalar_type() == k.scalar_type() &&
                  gy.device() == k.device(),
              "bi_wkv: grad_y must match y (shape ", k.sizes(), ", dtype and device)");
}

inline Dims make_dims(const at::Tensor& k, int64_t chunk_len, bool causal) {
  Dims d;
  d.B = k.size(0);
  d.T = k.size(1);
  d.C = k.size(2);
  TORCH_CHECK(d.T < (int64_t(1) << 31), "bi_wkv: T must be < 2^31");
  d.chunk_len = (int)std::max<int64_t>(1, std::min<int64_t>(chunk_len, d.T));
  d.nch = (int)((d.T + d.chunk_len - 1) / d.chunk_len);
  d.causal = causal;
  return d;
}

// Carry buffer [B, nch, 2 (left, right), F, C] of a call (F = kFieldsDW or kFieldsPlain
// fields per State, see CarryView), in the accumulation dtype of `opt`. Uninitialised: the
// summary phase writes every element before anything reads it (test builds poison it).
inline at::Tensor carry_buffer(const Dims& d, int fields, const at::TensorOptions& opt) {
  return kernels::poison(at::empty({d.B, d.nch, 2, fields, d.C}, opt));
}

// Per-(batch, chunk) partial sums [B, nch, C] of gw or gu, reduced in a fixed order by the
// caller (deterministic); zero-filled, so empty inputs give zero gradients.
inline at::Tensor partial_sums(const Dims& d, const at::TensorOptions& opt) {
  return at::zeros({d.B, d.nch, d.C}, opt);
}

// w and u in the accumulation type A of k's dtype, with that type's tensor options.
struct Weights {
  at::TensorOptions opt;
  at::Tensor w, u;
};
template <class A> Weights weights_in(const at::Tensor& k, const at::Tensor& w, const at::Tensor& u) {
  Weights r;
  r.opt = k.options().dtype(c10::CppTypeToScalarType<A>::value);
  r.w = w.to(r.opt.dtype()).contiguous();
  r.u = u.to(r.opt.dtype()).contiguous();
  return r;
}

// What a driver provides (cpu.cpp: Driver<Device::kCpu>, cuda.cu: Driver<Device::kCuda>):
//   Guard, kOnCuda               from kernels::CpuDriver / kernels::CudaDriver
//   dims(k, chunk_len, causal) the Dims of a call (with the driver's own limits)
//   forward<T, A>(d, k, v, y, w, u, carry)
//   backward<T, A>(d, k, v, g, gk, gv, w, u, carry, pcarry, gwp, gup)
// with w, u in the accumulation type A and the buffers of carry_buffer / partial_sums.
template <Device D> struct Driver;

using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;  // gw, gu, gk, gv

// The entry points torch.ops.mmvrwkv.bi_wkv_forward / _backward of device D (defined once
// for both devices in dispatch.h, instantiated by each driver).
template <Device D> struct Op {
  static at::Tensor forward(const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
                            const at::Tensor& v, int64_t chunk_len, bool causal);
  static Grads backward(const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
                        const at::Tensor& v, const at::Tensor& gy, int64_t chunk_len, bool causal);
};

// Per pack of kPackWidth<float> channels: whether the CPU kernel takes the fast walk for a
// call with these arguments (cpu.cpp; for tests).
std::vector<bool> cpu_fast_packs(const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
                                 int64_t chunk_len, bool causal);

}  // namespace biwkv
