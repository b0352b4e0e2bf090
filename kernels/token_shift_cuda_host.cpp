// TEST-ONLY host build of the token-shift CUDA driver: token_shift_cuda.cu compiled by g++
// with BIWKV_HOST_CUDA, so its host logic and its kernels' bodies run on CPU tensors, every
// launch emulated by loops over blocks and threads (bi_wkv_cuda_launch.h). Built on demand by
// tests/ops/test_token_shift.py; setup.py never builds it.
#ifndef BIWKV_HOST_CUDA
#error "token_shift_cuda_host.cpp is the test-only host build: compile it with -DBIWKV_HOST_CUDA"
#endif

#include "token_shift_cuda.cu"

#include <torch/csrc/utils/pybind.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Host build of the token-shift CUDA driver (tests only)";
  m.def("forward", [](const at::Tensor& x, const at::Tensor& mix, int64_t H, int64_t W,
                      const std::string& mode, int64_t s, int64_t head_size, int64_t quarter) {
    return tshift::token_shift_mix_forward_cuda(x, mix, H, W, mode, s, head_size, quarter);
  });
  m.def("backward", [](const at::Tensor& x, const at::Tensor& mix, const at::Tensor& g, int64_t H,
                       int64_t W, const std::string& mode, int64_t s, int64_t head_size,
                       int64_t quarter) {
    return tshift::token_shift_mix_backward_cuda(x, mix, g, H, W, mode, s, head_size, quarter);
  });
  m.def("set_reverse_order", [](bool reverse) { biwkv::host_cuda::reverse_order() = reverse; });
}
