// The one home of the `mmvrwkv` torch library and of the Python module mmvrwkv._ext. The
// ops' schemas and kernels are fragments of the library, each in its own <op>/op.cpp; this
// file only claims the namespace and builds the module (with the attributes ops export).
// pybind with torch's Tensor casters, without the C++ frontend torch/extension.h adds.
#include <torch/csrc/utils/pybind.h>
#include <torch/library.h>

namespace biwkv {
void export_to_python(pybind11::module_& m);  // bi_wkv/op.cpp
}  // namespace biwkv

// The operators are defined by the fragments: bi_wkv/op.cpp, bi_wkv6/op.cpp, token_shift/op.cpp.
TORCH_LIBRARY(mmvrwkv, m) {}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mmvrwkv compiled ops (Bi-WKV, Bi-WKV6, token shift); the ops live in torch.ops.mmvrwkv";
#ifdef MMVRWKV_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  biwkv::export_to_python(m);
}
