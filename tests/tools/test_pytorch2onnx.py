"""tools/deployment/pytorch2onnx.py: a shallow VRWKV-T exported by the legacy (TorchScript
tracing, dynamo=False) and the dynamo exporter, run in onnxruntime at two image sizes and two
batch sizes (dynamic batch), max abs diff <= 1e-4; the whole classifier from a config; errors.

The Bi-WKV op runs its 'torch' backend while exporting (the test for that choice is in
tests/ops); these tests pin the graph's numbers against the PyTorch model."""
import subprocess
import sys

import pytest
import torch

pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

from tool_helpers import CFG, ROOT, load_tool  # noqa: E402

SCRIPT = f'{ROOT}/tools/deployment/pytorch2onnx.py'
ATOL = 1e-4


@pytest.fixture(scope='module')
def tool():
    return load_tool('deployment/pytorch2onnx')


@pytest.mark.parametrize('exporter', ['legacy', 'dynamo'])
@pytest.mark.parametrize('size', [(64, 64), (48, 80)])
def test_backbone_matches_onnxruntime(tool, tmp_path, exporter, size):
    """VRWKV-T (2 blocks, Q-Shift + Bi-WKV) through `exporter` at image `size`: the graph's
    feature map equals PyTorch's at batch 1 and, the batch being dynamic, at batch 3."""
    torch.manual_seed(0)
    model = tool.build_backbone('tiny', size, depth=2)
    # Non-trivial mixing and decay, so that a wrong shift or scan changes the numbers.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'spatial_mix' in name or 'spatial_decay' in name or 'spatial_first' in name:
                p.uniform_(-1, 1)
    path = str(tmp_path / f'{exporter}.onnx')
    assert tool.export_onnx(model, path, (1, 3, *size), exporter) == ['feat0']
    results = tool.verify_onnx(model, path, tool.verify_shapes((1, 3, *size), True, False))
    assert [s for s, _ in results] == [(1, 3, *size), (3, 3, *size)]
    for shape, diffs in results:
        assert diffs['feat0'] <= ATOL, (exporter, shape, diffs)


def test_dynamic_image_size_dynamo(tool, tmp_path):
    """--dynamic-size with the dynamo exporter: one file serves other batch sizes and other
    (also non-square) image sizes within 1e-4 of PyTorch (the patch grid stays symbolic in
    the token shift and the position-embedding resize)."""
    torch.manual_seed(0)
    model = tool.build_backbone('tiny', (64, 64), depth=2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'spatial_mix' in name or 'spatial_decay' in name or 'spatial_first' in name:
                p.uniform_(-1, 1)
    path = str(tmp_path / 'dyn.onnx')
    tool.export_onnx(model, path, (1, 3, 64, 64), 'dynamo', dynamic_size=True)
    shapes = [(1, 3, 64, 64), (2, 3, 96, 80), (1, 3, 48, 112)]
    results = tool.verify_onnx(model, path, shapes)
    assert [s for s, _ in results] == shapes
    for shape, diffs in results:
        assert diffs['feat0'] <= ATOL, (shape, diffs)


def test_dynamic_size_refused_for_legacy_exporter(tool):
    with pytest.raises(SystemExit):
        tool.parse_args(['--arch', 'tiny', '--dynamic-size', '--exporter', 'legacy'])


def test_classifier_from_config(tool, tmp_path, capsys):
    """The demo config's whole classifier (backbone + neck + head -> 10 logits), legacy
    exporter: --verify passes and prints the difference per input."""
    pytest.importorskip('mmpretrain')
    out = tmp_path / 'cls.onnx'
    assert tool.main([CFG, '--shape', '8', '8', '--out', str(out), '--exporter', 'legacy',
                      '--verify']) == 0
    printed = capsys.readouterr().out
    assert "outputs ['logits']" in printed
    assert 'input (3, 3, 8, 8): max abs diff logits' in printed
    assert 'PASS: max abs diff' in printed
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    (logits, ) = session.run(None, {'input': torch.randn(2, 3, 8, 8).numpy()})
    assert logits.shape == (2, 10)


def test_verify_reports_a_wrong_graph(tool, tmp_path, monkeypatch):
    """--verify fails (exit 1) when the graph's numbers differ from the model's."""
    real = tool.verify_onnx

    def off_by_one(model, path, shapes, seed=0):
        return [(s, {n: d + 1.0 for n, d in diffs.items()}) for s, diffs in
                real(model, path, shapes, seed)]
    monkeypatch.setattr(tool, 'verify_onnx', off_by_one)
    argv = ['--arch', 'tiny', '--depth', '1', '--shape', '32', '32', '--out',
            str(tmp_path / 'a.onnx'), '--exporter', 'legacy', '--verify']
    assert tool.main(argv) == 1


def test_help_runs():
    res = subprocess.run([sys.executable, SCRIPT, '--help'], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and '--exporter' in res.stdout and '--verify' in res.stdout


def test_verify_shapes(tool):
    assert tool.verify_shapes((1, 3, 64, 48), True, False) == [(1, 3, 64, 48), (3, 3, 64, 48)]
    assert tool.verify_shapes((2, 3, 64, 48), False, True) == [(2, 3, 64, 48), (2, 3, 80, 64)]


def test_bad_arguments(tool, tmp_path):
    with pytest.raises(SystemExit):
        tool.parse_args([])  # neither a config nor --arch
    with pytest.raises(SystemExit):
        tool.parse_args([CFG, '--arch', 'tiny'])
    with pytest.raises(SystemExit):
        tool.parse_args(['--arch', 'tiny', '--backbone-only'])
    model = tool.build_backbone('tiny', (32, 32), depth=1)
    with pytest.raises(ValueError, match='exporter must be one of'):
        tool.export_onnx(model, str(tmp_path / 'x.onnx'), (1, 3, 32, 32), 'tensorrt')
    with pytest.raises(ValueError, match=r'shape must be \(B, C, H, W\)'):
        tool.export_onnx(model, str(tmp_path / 'x.onnx'), (3, 32, 32), 'legacy')
