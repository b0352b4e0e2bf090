// TEST-ONLY: what every op's host-build Python module (<op>/cuda_host.cpp) exposes besides
// its entry points: the launch log and the thread order of the host emulation
// (common/launch.h) and the threads per block of the op's kernels. Include it first.
#pragma once
#ifndef MMVRWKV_HOST_CUDA
#error "the <op>/cuda_host.cpp files are the test-only host builds: compile them with -DMMVRWKV_HOST_CUDA"
#endif

#include <torch/csrc/utils/pybind.h>

#include "common/launch.h"

namespace kernels {
namespace host_cuda {

// doc; launches(): [(kernel, blocks, threads)] since clear_launches(); set_reverse_order(bool);
// threads_per_block.
inline void export_common(pybind11::module_& m, const char* doc, int threads_per_block) {
  m.doc() = doc;
  m.def("launches", [] {
    pybind11::list out;
    for (const auto& l : launches()) out.append(pybind11::make_tuple(l.kernel, l.blocks, l.threads));
    return out;
  }, "[(kernel, blocks, threads)] of the launches since clear_launches()");
  m.def("clear_launches", [] { launches().clear(); });
  m.def("set_reverse_order", [](bool r) { reverse_order() = r; },
        "run the threads of every launch in descending order");
  m.attr("threads_per_block") = threads_per_block;
}

// export_common, and forward / backward: Op::forward / Op::backward (<op>/host.h) on CPU tensors.
template <class Op>
void export_module(pybind11::module_& m, const char* doc, int threads_per_block) {
  export_common(m, doc, threads_per_block);
  m.def("forward", &Op::forward, "forward of the CUDA driver, on CPU tensors");
  m.def("backward", &Op::backward, "backward of the CUDA driver, on CPU tensors");
}

}  // namespace host_cuda
}  // namespace kernels
