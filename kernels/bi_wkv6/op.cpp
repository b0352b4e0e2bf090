// Torch bindings of the Bi-WKV6 op: the schemas of its two custom operators (a fragment of
// the `mmvrwkv` library, common/module.cpp) and their CPU / CUDA implementations (Op<D>,
// host.h). Fake tensors, autograd and the backend choice are Python (mmvrwkv/ops/bi_wkv6/).
#include "bi_wkv6/host.h"
#include "common/library.h"

KERNELS_REGISTER_OP(biwkv6::Op,
                    "bi_wkv6_forward", "(Tensor r, Tensor k, Tensor v, Tensor w, Tensor u) -> Tensor",
                    "bi_wkv6_backward",
                    "(Tensor r, Tensor k, Tensor v, Tensor w, Tensor u, Tensor grad_y) "
                    "-> (Tensor, Tensor, Tensor, Tensor, Tensor)")
