// Host-side code shared by the Bi-WKV bindings and the CPU / CUDA drivers: the op's
// constants, the input checks every entry point runs (the Python front checks first, with
// friendlier messages; these keep direct torch.ops callers from reaching a kernel with bad
// pointers), the Dims of a call and the allocation of its scratch buffers.
// Only ATen headers (not torch/extension.h, 2x the lines, which every nvcc pass re-parses):
// the drivers need tensors, dispatch and three factories; the bindings add pybind themselves.
#pragma once
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <limits>
#include <tuple>
#include <vector>

#include "bi_wkv_core.h"

namespace biwkv {

// Longest chunk the CUDA kernels accept: each thread keeps up to 2 * kCudaMaxChunk States of
// one chunk in local memory (bi_wkv_cuda.cu). Exported as mmvrwkv._ext.cuda_max_chunk_len.
constexpr int kCudaMaxChunk = 32;

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

// Outputs and scratch buffers start uninitialised. In the host build of the CUDA driver
// (BIWKV_HOST_CUDA, tests only) they are filled with NaN, so that an element no kernel
// writes shows up in the results; in the real builds poison() returns t unchanged.
inline at::Tensor poison(at::Tensor t) {
#ifdef BIWKV_HOST_CUDA
  t.fill_(std::numeric_limits<double>::quiet_NaN());
#endif
  return t;
}

inline at::Tensor empty_output_like(const at::Tensor& t) { return poison(at::empty_like(t)); }

// Carry buffer [B, nch, 2 (left, right), F, C] of a call (F = kFieldsDW or kFieldsPlain
// fields per State, see CarryView), in the accumulation dtype of `opt`. Uninitialised: the
// summary phase writes every element before anything reads it (test builds poison it).
inline at::Tensor carry_buffer(const Dims& d, int fields, const at::TensorOptions& opt) {
  return poison(at::empty({d.B, d.nch, 2, fields, d.C}, opt));
}

// Per-(batch, chunk) partial sums [B, nch, C] of gw or gu, reduced in a fixed order by the
// caller (deterministic); zero-filled, so empty inputs give zero gradients.
inline at::Tensor partial_sums(const Dims& d, const at::TensorOptions& opt) {
  return at::zeros({d.B, d.nch, d.C}, opt);
}

at::Tensor bi_wkv_forward_cpu(const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
                              const at::Tensor& v, int64_t chunk_len, bool causal);
std::vector<at::Tensor> bi_wkv_backward_cpu(const at::Tensor& w, const at::Tensor& u,
                                            const at::Tensor& k, const at::Tensor& v,
                                            const at::Tensor& gy, int64_t chunk_len, bool causal);
std::vector<bool> bi_wkv_cpu_fast_packs(const at::Tensor& w, const at::Tensor& u,
                                        const at::Tensor& k, int64_t chunk_len, bool causal);
#if defined(BIWKV_WITH_CUDA) || defined(BIWKV_HOST_CUDA)
// CPU tensors in the host build (BIWKV_HOST_CUDA, tests only; see bi_wkv_cuda_launch.h).
at::Tensor bi_wkv_forward_cuda(const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
                               const at::Tensor& v, int64_t chunk_len, bool causal);
std::vector<at::Tensor> bi_wkv_backward_cuda(const at::Tensor& w, const at::Tensor& u,
                                             const at::Tensor& k, const at::Tensor& v,
                                             const at::Tensor& gy, int64_t chunk_len, bool causal);
#endif

}  // namespace biwkv
