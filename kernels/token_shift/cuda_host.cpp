// TEST-ONLY host build of the token-shift CUDA driver: cuda.cu compiled by g++ with
// MMVRWKV_HOST_CUDA, so its host logic and its kernels' bodies run on CPU tensors, every
// launch emulated by loops over blocks and threads (common/launch.h). Built on demand by
// tests/ops/test_token_shift.py; setup.py never builds it.
#include "common/host_module.h"

#include "token_shift/cuda.cu"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using Op = tshift::Op<tshift::Device::kCuda>;
  kernels::host_cuda::export_common(m, "Host build of the token-shift CUDA driver (tests only)",
                                    tshift::kCudaThreads);
  // (shift_mode as std::string: pybind has no caster for c10::string_view)
  m.def("forward", [](const at::Tensor& x, const at::Tensor& mix, int64_t H, int64_t W,
                      const std::string& mode, int64_t s, int64_t head_size, int64_t quarter) {
    return Op::forward(x, mix, H, W, mode, s, head_size, quarter);
  });
  m.def("backward", [](const at::Tensor& x, const at::Tensor& mix, const at::Tensor& g, int64_t H,
                       int64_t W, const std::string& mode, int64_t s, int64_t head_size,
                       int64_t quarter) {
    return Op::backward(x, mix, g, H, W, mode, s, head_size, quarter);
  });
}
