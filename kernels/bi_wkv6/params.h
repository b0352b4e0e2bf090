// Launch parameters of the Bi-WKV6 kernels: the one place to change them. (The CPU's pack
// width is common/simd.h's kPackBytes, shared by every op.)
#pragma once
#include <stdint.h>

#include <algorithm>
#include <cmath>

namespace biwkv6 {

// Threads per block of every CUDA kernel of the op (1-D grids over the work items).
constexpr int kCudaThreads = 128;

// Checkpoint spacing of the gradient pass (both drivers) and chunk length of the CUDA column
// kernels: about sqrt(T), which minimises the per-row scratch (nck + ck_len) * N.
inline int checkpoint_len(int64_t T) {
  return (int)std::max<int64_t>(1, (int64_t)std::ceil(std::sqrt((double)T)));
}

// Packs of value channels per column block of the CPU driver: each token's q[j], p[j], dec[j]
// are broadcast once for all of them. Sized for AVX-512 (a pack is one register there); the
// results do not depend on it (every channel of a block runs the same arithmetic), only the
// register pressure does.
constexpr int kColumnBlockPacks = 2;

}  // namespace biwkv6
