// Torch bindings of the Bi-WKV op: the schemas of its two custom operators (a fragment of
// the `mmvrwkv` library, common/module.cpp), their CPU / CUDA implementations (Op<D>,
// host.h) and the module attributes the Python side reads. Autograd, fake tensors and the
// backend choice are Python (mmvrwkv/ops/_ext.py, mmvrwkv/ops/bi_wkv/).
#include <torch/csrc/utils/pybind.h>

#include "bi_wkv/host.h"
#include "common/library.h"
#include "common/simd.h"

namespace biwkv {

void export_to_python(pybind11::module_& m) {
  // The CUDA kernel's chunk_len limit (params.h), also in CPU-only builds.
  m.attr("cuda_max_chunk_len") = kCudaMaxChunk;
  m.def("cpu_fast_path_packs", &cpu_fast_packs, pybind11::arg("w"), pybind11::arg("u"),
        pybind11::arg("k"), pybind11::arg("chunk_len"), pybind11::arg("causal"),
        "Diagnostics for tests: per pack of cpu_pack_width channels, whether the CPU kernel "
        "takes its fast walk (kernels/bi_wkv/core.h) for these arguments.");
  // Channels per pack of the CPU kernel with fp32 math (the fast walk is chosen per pack).
  m.attr("cpu_pack_width") = kernels::kPackWidth<float>;
}

}  // namespace biwkv

KERNELS_REGISTER_OP(biwkv::Op,
                    "bi_wkv_forward",
                    "(Tensor w, Tensor u, Tensor k, Tensor v, int chunk_len, bool causal) -> Tensor",
                    "bi_wkv_backward",
                    "(Tensor w, Tensor u, Tensor k, Tensor v, Tensor grad_y, int chunk_len, "
                    "bool causal) -> (Tensor, Tensor, Tensor, Tensor)")
