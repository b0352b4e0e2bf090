// Torch bindings of the token-shift-and-mix op: the schemas of two custom operators in the
// `mmvrwkv` namespace (a fragment; kernels/bi_wkv.cpp holds the namespace's TORCH_LIBRARY
// block) and their CPU / CUDA implementations. Autograd, fake tensors and backend choice are
// Python (mmvrwkv/ops/token_shift/).
#include <torch/library.h>

#include "token_shift.h"

TORCH_LIBRARY_FRAGMENT(mmvrwkv, m) {
  m.def(
      "token_shift_mix_forward(Tensor x, Tensor mix, int H, int W, str shift_mode, "
      "int shift_pixel, int head_size, int quarter) -> Tensor");
  m.def(
      "token_shift_mix_backward(Tensor x, Tensor mix, Tensor grad_out, int H, int W, "
      "str shift_mode, int shift_pixel, int head_size, int quarter) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mmvrwkv, CPU, m) {
  m.impl("token_shift_mix_forward", &tshift::token_shift_mix_forward_cpu);
  m.impl("token_shift_mix_backward", &tshift::token_shift_mix_backward_cpu);
}

#ifdef BIWKV_WITH_CUDA
TORCH_LIBRARY_IMPL(mmvrwkv, CUDA, m) {
  m.impl("token_shift_mix_forward", &tshift::token_shift_mix_forward_cuda);
  m.impl("token_shift_mix_backward", &tshift::token_shift_mix_backward_cuda);
}
#endif
