// The host side of the Bi-WKV entry points, once for both devices: checks, Dims, outputs and
// buffers, the dtype dispatch and the fixed-order reduction of the gw / gu partials; the
// device's work is Driver<D> (host.h). Included by the drivers only (cpu.cpp, cuda.cu), which
// instantiate Op<D> after defining their Driver<D>.
#pragma once
#include "bi_wkv/host.h"

namespace biwkv {

template <Device D>
at::Tensor Op<D>::forward(const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
                          const at::Tensor& v, int64_t chunk_len, bool causal) {
  using Dev = Driver<D>;
  check_inputs(w, u, k, v, chunk_len, Dev::kOnCuda);
  const typename Dev::Guard guard(k.device());
  const Dims d = Dev::dims(k, chunk_len, causal);
  auto y = kernels::empty_output_like(k);
  if (k.numel() == 0) return y;
  constexpr const char* kDispatch = D == Device::kCpu ? "bi_wkv_forward_cpu"
                                                  : "bi_wkv_forward_cuda";  // names dtype errors
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, k.scalar_type(), kDispatch, [&] {
    using A = at::opmath_type<scalar_t>;
    const Weights wu = weights_in<A>(k, w, u);
    auto carry = carry_buffer(d, kFieldsPlain, wu.opt);
    Dev::template forward<scalar_t, A>(d, k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                                       y.data_ptr<scalar_t>(), wu.w.data_ptr<A>(), wu.u.data_ptr<A>(),
                                       carry.data_ptr<A>());
  });
  return y;
}

template <Device D>
Grads Op<D>::backward(const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
                      const at::Tensor& v, const at::Tensor& gy, int64_t chunk_len, bool causal) {
  using Dev = Driver<D>;
  check_inputs(w, u, k, v, chunk_len, Dev::kOnCuda);
  check_grad(gy, k);
  const typename Dev::Guard guard(k.device());
  const Dims d = Dev::dims(k, chunk_len, causal);
  auto gk = kernels::empty_output_like(k);
  auto gv = kernels::empty_output_like(v);
  at::Tensor gw, gu;
  constexpr const char* kDispatch = D == Device::kCpu ? "bi_wkv_backward_cpu"
                                                  : "bi_wkv_backward_cuda";  // names dtype errors
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, k.scalar_type(), kDispatch, [&] {
    using A = at::opmath_type<scalar_t>;
    const Weights wu = weights_in<A>(k, w, u);
    auto gwp = partial_sums(d, wu.opt);
    auto gup = partial_sums(d, wu.opt);
    if (k.numel() > 0) {
      auto g = gy.contiguous();
      auto carry = carry_buffer(d, kFieldsDW, wu.opt);
      auto pcarry = carry_buffer(d, kFieldsPlain, wu.opt);
      Dev::template backward<scalar_t, A>(
          d, k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(),
          gk.data_ptr<scalar_t>(), gv.data_ptr<scalar_t>(), wu.w.data_ptr<A>(), wu.u.data_ptr<A>(),
          carry.data_ptr<A>(), pcarry.data_ptr<A>(), gwp.data_ptr<A>(), gup.data_ptr<A>());
    }
    gw = gwp.sum({0, 1}).to(w.scalar_type());
    gu = gup.sum({0, 1}).to(u.scalar_type());
  });
  return {gw, gu, gk, gv};
}

}  // namespace biwkv
