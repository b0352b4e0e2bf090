// Launch parameters of the Bi-WKV kernels: the one place to change them. (The CPU's pack
// width is common/simd.h's kPackBytes, shared by every op; the fast walk's validity bounds
// are numerics and live beside it in core.h. The default chunk lengths per device are a
// Python choice: mmvrwkv/ops/bi_wkv/__init__.py.)
#pragma once

namespace biwkv {

// Threads per block of every CUDA kernel of the op (1-D grids over the work items).
constexpr int kCudaThreads = 256;

// Longest chunk the CUDA kernels accept: each thread keeps up to 2 * kCudaMaxChunk States of
// one chunk in local memory (cuda.cu). Exported as mmvrwkv._ext.cuda_max_chunk_len.
constexpr int kCudaMaxChunk = 32;

}  // namespace biwkv
