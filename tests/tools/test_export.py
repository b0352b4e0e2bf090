"""torch.export and TorchScript tracing of VRWKV, as README "Deployment" documents them: each
saved, loaded in a fresh process and compared with the eager model.

torch.export keeps the compiled Bi-WKV kernel as the custom op
``torch.ops.mmvrwkv.bi_wkv_forward`` (CPU backend), so a saved ``.pt2`` loads only after
``import mmvrwkv.ops`` has registered it; TorchScript tracing runs the portable 'torch'
backend, so the traced file holds only aten ops and loads with torch alone."""
import subprocess
import sys

import pytest
import torch

from tool_helpers import ROOT  # noqa: E402

from mmvrwkv.models.backbones import VRWKV  # noqa: E402
from mmvrwkv.ops import available_backends  # noqa: E402

SIZE = 64


def tiny_model():
    torch.manual_seed(0)
    model = VRWKV(arch='tiny', depth=2, img_size=SIZE).eval()
    with torch.no_grad():  # non-trivial decay and mixing, so that a wrong graph shows
        for name, p in model.named_parameters():
            if 'spatial_' in name:
                p.uniform_(-1, 1)
    return model


def run_fresh(code):
    """Run `code` in a new interpreter (nothing of this test process imported)."""
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def save_case(tmp_path, model):
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        ref = model(x)[0]
    torch.save({'x': x, 'ref': ref}, tmp_path / 'case.pt')
    return x


COMPARE = '''
case = torch.load({case!r})
out = loaded(case['x'])[0]
print('max abs diff', float((out - case['ref']).abs().max()))
'''


@pytest.mark.skipif('cpu' not in available_backends(), reason='needs the compiled CPU kernel')
def test_torch_export_save_load_compare(tmp_path):
    """torch.export (CPU, 'auto' backend -> the compiled kernel as a custom op): the .pt2
    loads after `import mmvrwkv.ops`, not before, and gives the eager output."""
    model = tiny_model()
    x = save_case(tmp_path, model)
    ep = torch.export.export(model, (x, ))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == 'call_function'}
    assert 'mmvrwkv.bi_wkv_forward.default' in targets, sorted(targets)
    path = str(tmp_path / 'vrwkv.pt2')
    torch.export.save(ep, path)
    case = str(tmp_path / 'case.pt')
    load = f"loaded = torch.export.load({path!r}).module()"

    res = run_fresh('import torch\n' + load)
    assert res.returncode != 0 and 'mmvrwkv' in res.stderr, res.stderr[-2000:]

    res = run_fresh('import torch\nimport mmvrwkv.ops\n' + load + COMPARE.format(case=case))
    assert res.returncode == 0, res.stderr[-3000:]
    assert float(res.stdout.split('max abs diff')[-1]) <= 1e-5


def test_torchscript_trace_save_load_compare(tmp_path):
    """torch.jit.trace picks the 'torch' Bi-WKV backend (plain aten ops): the saved file loads
    with torch alone and gives the eager output, also at another batch size."""
    model = tiny_model()
    x = save_case(tmp_path, model)
    with torch.no_grad():
        traced = torch.jit.trace(model, (x, ))
    graph = str(traced.inlined_graph)
    assert 'mmvrwkv::' not in graph and 'aten::cumsum' in graph  # the 'torch' backend's scan
    path = str(tmp_path / 'vrwkv.ts')
    traced.save(path)
    case = str(tmp_path / 'case.pt')
    res = run_fresh(f'import torch\nloaded = torch.jit.load({path!r})' + COMPARE.format(case=case))
    assert res.returncode == 0, res.stderr[-3000:]
    assert float(res.stdout.split('max abs diff')[-1]) <= 1e-4
    x1 = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert (torch.jit.load(path)(x1)[0] - model(x1)[0]).abs().max() <= 1e-4
