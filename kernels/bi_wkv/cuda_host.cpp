// TEST-ONLY host build of the Bi-WKV CUDA driver: cuda.cu compiled by g++ with
// MMVRWKV_HOST_CUDA, so its host logic (checks, Dims, buffers, launch sizes) and its kernels'
// bodies (the core with V = float / double, one thread per item) run on CPU tensors, each
// launch emulated by loops over blocks and threads (common/launch.h). Built on demand by
// tests/ops/test_bi_wkv_kernels.py (torch.utils.cpp_extension.load); setup.py never builds
// it, so it is not part of the installed package.
//
// Python module: forward / backward (the CUDA entry points, on CPU tensors), the launch log,
// the thread order, and the index and size helpers of the driver for edge-case tests.
#include "common/host_module.h"

#include <tuple>

#include "bi_wkv/cuda.cu"

namespace biwkv {
namespace {

// Runs the driver's thread -> item decomposition for one thread (block, thread) of a launch
// with block_dim threads per block. None past the end of the work.
py::object item_of(bool per_chunk, i64 B, int nch, i64 C, unsigned int block, unsigned int thread,
                   unsigned int block_dim) {
  Dims d;
  d.B = B;
  d.T = (i64)nch;  // only B, nch, C enter the decomposition
  d.C = C;
  d.chunk_len = 1;
  d.nch = nch;
  d.causal = false;
  blockIdx = kernels::host_cuda::Dim3{block, 0, 0};
  threadIdx = kernels::host_cuda::Dim3{thread, 0, 0};
  blockDim = kernels::host_cuda::Dim3{block_dim, 1, 1};
  Index ix;
  const bool ok = per_chunk ? chunk_item(d, ix) : column_item(d, ix);
  if (!ok) return py::none();
  return py::make_tuple(ix.b, ix.j, ix.c);
}

// (chunk_len, nch) the driver uses for k of shape [B, T, C] (a meta tensor: no memory), or
// the driver's error.
std::tuple<int, int> dims_of(i64 B, i64 T, i64 C, int64_t chunk_len) {
  at::Tensor k = at::empty({B, T, C}, at::TensorOptions().device(at::kMeta));
  const Dims d = Driver<Device::kCuda>::dims(k, chunk_len, false);
  return {d.chunk_len, d.nch};
}

}  // namespace
}  // namespace biwkv

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  kernels::host_cuda::export_module<biwkv::Op<biwkv::Device::kCuda>>(
      m, "TEST-ONLY host emulation of mmvrwkv's Bi-WKV CUDA driver (kernels/bi_wkv/cuda_host.cpp)",
      biwkv::kCudaThreads);
  m.def("item_of", &biwkv::item_of, "(b, j, c) of one thread, or None past the end");
  m.def("blocks_for", &biwkv::blocks_for, "blocks of a launch over n items");
  m.def("dims_of", &biwkv::dims_of, "(chunk_len, nch) of the driver for [B, T, C]");
  m.attr("max_chunk_len") = biwkv::kCudaMaxChunk;
}
