// Torch bindings of the Bi-WKV op: the schema of two custom operators in the `mmvrwkv`
// namespace and their CPU / CUDA implementations. Autograd, fake tensors and backend choice
// are registered in Python (mmvrwkv/ops/bi_wkv.py).
#include <torch/extension.h>
#include <torch/library.h>

#include "bi_wkv.h"

namespace {

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor> as_tuple(
    std::vector<torch::Tensor> g) {
  return {g[0], g[1], g[2], g[3]};
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor> backward_cpu(
    const torch::Tensor& w, const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& v,
    const torch::Tensor& gy, int64_t chunk_len, bool causal) {
  return as_tuple(biwkv::bi_wkv_backward_cpu(w, u, k, v, gy, chunk_len, causal));
}

#ifdef BIWKV_WITH_CUDA
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor> backward_cuda(
    const torch::Tensor& w, const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& v,
    const torch::Tensor& gy, int64_t chunk_len, bool causal) {
  return as_tuple(biwkv::bi_wkv_backward_cuda(w, u, k, v, gy, chunk_len, causal));
}
#endif

}  // namespace

TORCH_LIBRARY(mmvrwkv, m) {
  m.def("bi_wkv_forward(Tensor w, Tensor u, Tensor k, Tensor v, int chunk_len, bool causal) -> Tensor");
  m.def(
      "bi_wkv_backward(Tensor w, Tensor u, Tensor k, Tensor v, Tensor grad_y, int chunk_len, "
      "bool causal) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mmvrwkv, CPU, m) {
  m.impl("bi_wkv_forward", &biwkv::bi_wkv_forward_cpu);
  m.impl("bi_wkv_backward", &backward_cpu);
}

#ifdef BIWKV_WITH_CUDA
TORCH_LIBRARY_IMPL(mmvrwkv, CUDA, m) {
  m.impl("bi_wkv_forward", &biwkv::bi_wkv_forward_cuda);
  m.impl("bi_wkv_backward", &backward_cuda);
}
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mmvrwkv compiled ops (Bi-WKV); the ops live in torch.ops.mmvrwkv";
#ifdef BIWKV_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
