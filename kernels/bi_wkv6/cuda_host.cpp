// TEST-ONLY host build of the Bi-WKV6 CUDA driver: cuda.cu compiled by g++ with
// MMVRWKV_HOST_CUDA, so its host logic (checks, Dims, buffers, launch sizes) and its kernels'
// bodies run on CPU tensors, each launch emulated by loops over blocks and threads
// (common/launch.h). Built on demand by tests/ops/test_bi_wkv6_kernels.py; setup.py never
// builds it.
#include "common/host_module.h"

#include "bi_wkv6/cuda.cu"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // backward: (gr, gk, gv, gw, gu)
  kernels::host_cuda::export_module<biwkv6::Op<biwkv6::Device::kCuda>>(
      m, "TEST-ONLY host emulation of mmvrwkv's Bi-WKV6 CUDA driver (kernels/bi_wkv6/cuda_host.cpp)",
      biwkv6::kCudaThreads);
}
