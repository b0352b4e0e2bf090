// Declarations shared by the Bi-WKV bindings and the CPU / CUDA drivers, and the input
// checks every entry point runs (the Python front checks first, with friendlier messages;
// these keep direct torch.ops callers from reaching a kernel with bad pointers).
#pragma once
#include <ATen/OpMathType.h>
#include <torch/extension.h>

#include <tuple>

#include "bi_wkv_core.h"

namespace biwkv {

inline void check_inputs(const torch::Tensor& w, const torch::Tensor& u, const torch::Tensor& k,
                         const torch::Tensor& v, int64_t chunk_len, bool cuda) {
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

inline void check_grad(const torch::Tensor& gy, const torch::Tensor& k) {
  TORCH_CHECK(gy.sizes() == k.sizes() && gy.scalar_type() == k.scalar_type() &&
                  gy.device() == k.device(),
              "bi_wkv: grad_y must match y (shape ", k.sizes(), ", dtype and device)");
}

inline Dims make_dims(const torch::Tensor& k, int64_t chunk_len, bool causal) {
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

torch::Tensor bi_wkv_forward_cpu(const torch::Tensor& w, const torch::Tensor& u,
                                 const torch::Tensor& k, const torch::Tensor& v, int64_t chunk_len,
                                 bool causal);
std::vector<torch::Tensor> bi_wkv_backward_cpu(const torch::Tensor& w, const torch::Tensor& u,
                                               const torch::Tensor& k, const torch::Tensor& v,
                                               const torch::Tensor& gy, int64_t chunk_len,
                                               bool causal);
#ifdef BIWKV_WITH_CUDA
torch::Tensor bi_wkv_forward_cuda(const torch::Tensor& w, const torch::Tensor& u,
                                  const torch::Tensor& k, const torch::Tensor& v,
                                  int64_t chunk_len, bool causal);
std::vector<torch::Tensor> bi_wkv_backward_cuda(const torch::Tensor& w, const torch::Tensor& u,
                                                const torch::Tensor& k, const torch::Tensor& v,
                                                const torch::Tensor& gy, int64_t chunk_len,
                                                bool causal);
#endif

}  // namespace biwkv
