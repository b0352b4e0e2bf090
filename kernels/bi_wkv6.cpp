// Torch bindings of the Bi-WKV6 op: the schema of its two custom operators in the `mmvrwkv`
// namespace (a fragment: kernels/bi_wkv.cpp owns the library and the Python module) and their
// CPU / CUDA implementations. Fake tensors, autograd and the backend choice are Python
// (mmvrwkv/ops/bi_wkv6/).
#include <torch/library.h>

#include <tuple>

#include "bi_wkv6.h"

namespace {

using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

Grads as_tuple(std::vector<at::Tensor> g) { return {g[0], g[1], g[2], g[3], g[4]}; }

Grads backward_cpu(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                   const at::Tensor& w, const at::Tensor& u, const at::Tensor& gy) {
  return as_tuple(biwkv6::bi_wkv6_backward_cpu(r, k, v, w, u, gy));
}

#ifdef BIWKV_WITH_CUDA
Grads backward_cuda(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                    const at::Tensor& w, const at::Tensor& u, const at::Tensor& gy) {
  return as_tuple(biwkv6::bi_wkv6_backward_cuda(r, k, v, w, u, gy));
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(mmvrwkv, m) {
  m.def("bi_wkv6_forward(Tensor r, Tensor k, Tensor v, Tensor w, Tensor u) -> Tensor");
  m.def(
      "bi_wkv6_backward(Tensor r, Tensor k, Tensor v, Tensor w, Tensor u, Tensor grad_y) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mmvrwkv, CPU, m) {
  m.impl("bi_wkv6_forward", &biwkv6::bi_wkv6_forward_cpu);
  m.impl("bi_wkv6_backward", &backward_cpu);
}

#ifdef BIWKV_WITH_CUDA
TORCH_LIBRARY_IMPL(mmvrwkv, CUDA, m) {
  m.impl("bi_wkv6_forward", &biwkv6::bi_wkv6_forward_cuda);
  m.impl("bi_wkv6_backward", &backward_cuda);
}
#endif
