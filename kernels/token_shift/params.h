// Launch parameters of the token-shift-and-mix kernels: the one place to change them.
#pragma once

namespace tshift {

// Threads per block of every CUDA kernel of the op (1-D grids).
constexpr int kCudaThreads = 256;

// Tokens per block of the mix gradient's partial sums (both drivers): one partial per
// (block, coefficient, channel), reduced afterwards in a fixed order. Also the CPU driver's
// unit of work under at::parallel_for.
constexpr long long kRowsPerBlock = 32;

// Channels per tile of the CPU backward's grad_x accumulator (a stack array the tile's M
// coefficient loops add into, so it stays in L1 and no heap scratch is needed).
constexpr long long kCpuTile = 256;

}  // namespace tshift
