// Torch bindings of the Bi-WKV op: the schema of two custom operators in the `mmvrwkv`
// namespace and their CPU / CUDA implementations. Autograd, fake tensors and backend choice
// are Python (mmvrwkv/ops/_ext.py; the backend choice: mmvrwkv/ops/bi_wkv/).
// pybind with torch's Tensor casters, without the C++ frontend torch/extension.h adds.
#include <torch/csrc/utils/pybind.h>
#include <torch/library.h>

#include "bi_wkv.h"
#include "bi_wkv_cpu_pack.h"

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> as_tuple(std::vector<at::Tensor> g) {
  return {g[0], g[1], g[2], g[3]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& w, const at::Tensor& u, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& gy, int64_t chunk_len, bool causal) {
  return as_tuple(biwkv::bi_wkv_backward_cpu(w, u, k, v, gy, chunk_len, causal));
}

#ifdef BIWKV_WITH_CUDA
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& w, const at::Tensor& u, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& gy, int64_t chunk_len, bool causal) {
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
  // The CUDA kernel's chunk_len limit (set in kernels/bi_wkv.h), also in CPU-only builds.
  m.attr("cuda_max_chunk_len") = biwkv::kCudaMaxChunk;
  m.def("cpu_fast_path_packs", &biwkv::bi_wkv_cpu_fast_packs, pybind11::arg("w"), pybind11::arg("u"),
        pybind11::arg("k"), pybind11::arg("chunk_len"), pybind11::arg("causal"),
        "Diagnostics for tests: per pack of cpu_pack_width channels, whether the CPU kernel "
        "takes its fast path (kernels/bi_wkv_cpu_fast.h) for these arguments.");
  // Channels per pack of the CPU kernel with fp32 math (the fast path decides per pack).
  m.attr("cpu_pack_width") = biwkv::kPackWidth<float>;
}
