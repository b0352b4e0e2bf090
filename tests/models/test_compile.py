"""torch.compile of the whole VRWKV and VRWKV6 backbones (issue: compile as a first-class
path).

Paths: eager (compiled kernels of the ops, the mixers' recompute path in training) vs
``torch.compile(fullgraph=True)`` with inductor (the ops as custom ops with fake
implementations; the mixers' plain path, AOTAutograd decides what to recompute). ``fullgraph``
makes any graph break an error.
"""
import pytest
import torch

from mmvrwkv.models.backbones import VRWKV, VRWKV6

pytestmark = pytest.mark.slow  # two inductor compilations per family, ~1 min each on 2 cores


@pytest.fixture(scope='module', params=[VRWKV, VRWKV6], ids=lambda f: f.__name__)
def model_and_input(request):
    torch.manual_seed(0)
    model = request.param(arch='tiny', img_size=32, patch_size=8, depth=2, key_norm=True)
    return model, torch.randn(2, 3, 32, 32), torch.randn(2, 192, 4, 4)


def test_compiled_inference_equals_eager(model_and_input):
    """path: eager vs inductor, eval + no_grad (inference_mode breaks mmpretrain's DropPath
    guards under dynamo, so no_grad is the documented way)."""
    model, x, _ = model_and_input
    model.eval()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        eager = model(x)[-1]
        out = compiled(x)[-1]
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)


def test_compiled_training_step_equals_eager(model_and_input):
    """path: eager (recompute path) vs inductor (plain path), train mode: same loss and the
    same gradient for every parameter. The loss weights the output with random numbers: a
    plain sum of squares of a LayerNorm output is constant and has no gradient to compare."""
    model, x, weight = model_and_input
    model.train()

    def grads(fn):
        model.zero_grad(set_to_none=True)
        loss = (fn(x)[-1] * weight).sum()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    torch._dynamo.reset()
    loss_e, g_e = grads(model)
    loss_c, g_c = grads(torch.compile(model, fullgraph=True))
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-4)
    assert g_c.keys() == g_e.keys()
    for name, g in g_e.items():
        torch.testing.assert_close(g_c[name], g, rtol=1e-4, atol=1e-5 * g.abs().max().item(),
                                   msg=name)
