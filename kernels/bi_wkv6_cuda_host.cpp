// TEST-ONLY host build of the Bi-WKV6 CUDA driver: bi_wkv6_cuda.cu compiled by g++ with
// BIWKV_HOST_CUDA, so its host logic (checks, Dims, buffers, launch sizes) and its kernels'
// bodies run on CPU tensors, each launch emulated by loops over blocks and threads
// (bi_wkv_cuda_launch.h, shared with the Bi-WKV host build). Built on demand by
// tests/ops/test_bi_wkv6_kernels.py; setup.py never builds it.
#ifndef BIWKV_HOST_CUDA
#error "bi_wkv6_cuda_host.cpp is the test-only host build: compile it with -DBIWKV_HOST_CUDA"
#endif

#include "bi_wkv6_cuda.cu"

#include <torch/csrc/utils/pybind.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "TEST-ONLY host emulation of mmvrwkv's Bi-WKV6 CUDA driver (kernels/bi_wkv6_cuda_host.cpp)";
  m.def("forward", &biwkv6::bi_wkv6_forward_cuda, "bi_wkv6_forward_cuda on CPU tensors");
  m.def("backward", &biwkv6::bi_wkv6_backward_cuda,
        "bi_wkv6_backward_cuda on CPU tensors: [gr, gk, gv, gw, gu]");
  m.def("launches", [] {
    pybind11::list out;
    for (const auto& l : biwkv::host_cuda::launches())
      out.append(pybind11::make_tuple(l.kernel, l.blocks, l.threads));
    return out;
  }, "[(kernel, blocks, threads)] of the launches since clear_launches()");
  m.def("clear_launches", [] { biwkv::host_cuda::launches().clear(); });
  m.def("set_reverse_order", [](bool r) { biwkv::host_cuda::reverse_order() = r; },
        "run the threads of every launch in descending order");
  m.attr("threads_per_block") = biwkv6::kThreads;
}
