// Host-side pieces every op shares: the Device an entry point is compiled for, and the
// allocation of outputs and scratch buffers (poisoned in the test-only host builds).
// Only ATen headers (not torch/extension.h, 2x the lines, which every nvcc pass re-parses).
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>

#include <limits>

namespace kernels {

// The device of an op's entry points Op<D> (<op>/host.h): CPU (cpu.cpp) or CUDA (cuda.cu,
// also its host emulation, on CPU tensors). Each driver specialises Driver<D> of its op.
enum class Device { kCpu, kCuda };

// What every CPU Driver<Device::kCpu> shares (the CUDA drivers': CudaDriver, common/launch.h):
// no device guard, CPU inputs.
struct CpuDriver {
  struct Guard {
    explicit Guard(const c10::Device&) {}
  };
  static constexpr bool kOnCuda = false;
};

// Outputs and scratch buffers start uninitialised. In the host build of a CUDA driver
// (MMVRWKV_HOST_CUDA, tests only) they are filled with NaN, so that an element no kernel
// writes shows up in the results; in the real builds poison() returns t unchanged.
inline at::Tensor poison(at::Tensor t) {
#ifdef MMVRWKV_HOST_CUDA
  t.fill_(std::numeric_limits<double>::quiet_NaN());
#endif
  return t;
}

inline at::Tensor empty_output_like(const at::Tensor& t) { return poison(at::empty_like(t)); }

}  // namespace kernels
