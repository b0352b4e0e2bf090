// Registration of an op (<op>/op.cpp). The library itself (TORCH_LIBRARY) and the Python
// module are in common/module.cpp; each op adds its two operators, NAME_forward and
// NAME_backward, with one KERNELS_REGISTER_OP.
#pragma once
#include <torch/library.h>

#include "common/host.h"

namespace kernels {

// m.impl of the entry points Op<D>::forward / Op<D>::backward (<op>/host.h).
template <template <Device> class Op, Device D>
void impl_forward_backward(torch::Library& m, const char* forward, const char* backward) {
  m.impl(forward, &Op<D>::forward);
  m.impl(backward, &Op<D>::backward);
}

}  // namespace kernels

#ifdef MMVRWKV_WITH_CUDA
#define KERNELS_IMPL_CUDA(Op, forward, backward)                                             \
  TORCH_LIBRARY_IMPL(mmvrwkv, CUDA, m) {                                                     \
    kernels::impl_forward_backward<Op, kernels::Device::kCuda>(m, forward, backward);        \
  }
#else
#define KERNELS_IMPL_CUDA(Op, forward, backward)
#endif

// KERNELS_REGISTER_OP(Op, "name_forward", "(args) -> result", "name_backward", "(args) ->
// results"): the two schemas in a fragment of the mmvrwkv library, Op<Device::kCpu> as their
// CPU kernels and, in CUDA builds, Op<Device::kCuda> as their CUDA kernels.
#define KERNELS_REGISTER_OP(Op, forward, forward_signature, backward, backward_signature)    \
  TORCH_LIBRARY_FRAGMENT(mmvrwkv, m) {                                                       \
    m.def(forward forward_signature);                                                        \
    m.def(backward backward_signature);                                                      \
  }                                                                                          \
  TORCH_LIBRARY_IMPL(mmvrwkv, CPU, m) {                                                      \
    kernels::impl_forward_backward<Op, kernels::Device::kCpu>(m, forward, backward);         \
  }                                                                                          \
  KERNELS_IMPL_CUDA(Op, forward, backward)
