// Torch bindings of the token-shift-and-mix op: the schemas of its two custom operators (a
// fragment of the `mmvrwkv` library, common/module.cpp) and their CPU / CUDA implementations
// (Op<D>, host.h). Autograd, fake tensors and backend choice are Python
// (mmvrwkv/ops/token_shift/).
#include "common/library.h"
#include "token_shift/host.h"

KERNELS_REGISTER_OP(tshift::Op,
                    "token_shift_mix_forward",
                    "(Tensor x, Tensor mix, int H, int W, str shift_mode, int shift_pixel, "
                    "int head_size, int quarter) -> Tensor",
                    "token_shift_mix_backward",
                    "(Tensor x, Tensor mix, Tensor grad_out, int H, int W, str shift_mode, "
                    "int shift_pixel, int head_size, int quarter) -> (Tensor, Tensor)")
