// The host side of the Bi-WKV6 entry points, once for both devices: checks, Dims, the dtype
// dispatch and the conversion of the results to the inputs' dtypes (gu summed over the batch
// in a fixed order); the device's work is Driver<D> (host.h). Included by the drivers only
// (cpu.cpp, cuda.cu), which instantiate Op<D> after defining their Driver<D>.
#pragma once
#include "bi_wkv6/host.h"

namespace biwkv6 {

template <Device D>
at::Tensor Op<D>::forward(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& w, const at::Tensor& u) {
  using Dev = Driver<D>;
  check_inputs(r, k, v, w, u, Dev::kOnCuda);
  const typename Dev::Guard guard(r.device());
  const Dims d = make_dims(r, u);
  at::Tensor y;
  constexpr const char* kDispatch = D == Device::kCpu ? "bi_wkv6_forward_cpu"
                                                  : "bi_wkv6_forward_cuda";  // names dtype errors
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), kDispatch, [&] {
    using A = at::opmath_type<scalar_t>;
    at::Tensor acc = at::empty(r.sizes(), r.options().dtype(c10::CppTypeToScalarType<A>::value));
    Dev::template forward<scalar_t, A>(d, r, k, v, w, u, acc);
    y = acc.to(r.scalar_type());
  });
  return y;
}

template <Device D>
Grads Op<D>::backward(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                      const at::Tensor& w, const at::Tensor& u, const at::Tensor& gy) {
  using Dev = Driver<D>;
  check_inputs(r, k, v, w, u, Dev::kOnCuda);
  check_grad(gy, r);
  const typename Dev::Guard guard(r.device());
  const Dims d = make_dims(r, u);
  Grads out;
  constexpr const char* kDispatch = D == Device::kCpu ? "bi_wkv6_backward_cpu"
                                                  : "bi_wkv6_backward_cuda";  // names dtype errors
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), kDispatch, [&] {
    using A = at::opmath_type<scalar_t>;
    GradsA g = empty_grads(d, r, r.options().dtype(c10::CppTypeToScalarType<A>::value));
    Dev::template backward<scalar_t, A>(d, r, k, v, w, u, gy, g);
    out = {g.gr.to(r.scalar_type()), g.gk.to(r.scalar_type()), g.gv.to(r.scalar_type()),
           g.gw.to(w.scalar_type()), g.gu.sum(0).to(u.scalar_type())};
  });
  return out;
}

}  // namespace biwkv6
