"""tools/model_converters/vrwkv2mmvrwkv.py on official VRWKV6 checkpoints: the family is
told by the keys, the configs/vrwkv6 model is the reference, the output loads strictly, and
the refusals of the v1 path hold (missing keys, wrong family / arch)."""
import os.path as osp
from collections import OrderedDict

import pytest
import torch

pytest.importorskip('mmpretrain')
pytest.importorskip('mmvrwkv.models.backbones')

from tool_helpers import ROOT, load_tool  # noqa: E402

conv = load_tool('model_converters/vrwkv2mmvrwkv')
V6_TINY_CFG = osp.join(ROOT, 'configs', 'vrwkv6', 'vrwkv6-tiny_8xb128_in1k.py')
V1_TINY_CFG = osp.join(ROOT, 'configs', 'vrwkv', 'vrwkv-tiny_8xb128_in1k.py')


def official_v6_keys(C=192, H=3, depth=12, gamma=False):
    """Official VRWKV6 mmcls key names and shapes, written out here: the state dict of the
    VRWKV6 backbone of OpenGVLab/Vision-RWKV,
    classification/mmcls_custom/models/backbones/vrwkv6.py."""
    k = OrderedDict()
    k['backbone.patch_embed.projection.weight'] = (C, 3, 16, 16)
    k['backbone.patch_embed.projection.bias'] = (C, )
    k['backbone.pos_embed'] = (1, 196, C)
    for i in range(depth):
        p = f'backbone.layers.{i}.'
        for n in (['ln0'] if i == 0 else []) + ['ln1', 'ln2']:
            k[p + n + '.weight'] = k[p + n + '.bias'] = (C, )
        if gamma:
            k[p + 'gamma1'] = k[p + 'gamma2'] = (C, )
        a = p + 'att.'
        for m in 'xwkvrg':
            k[a + f'time_maa_{m}'] = (1, 1, C)
        k[a + 'time_maa_w1'] = (C, 160)
        k[a + 'time_maa_w2'] = (5, 32, C)
        k[a + 'time_decay'] = (1, 1, C)
        k[a + 'time_decay_w1'] = (C, 64)
        k[a + 'time_decay_w2'] = (64, C)
        k[a + 'time_faaaa'] = (H, 64)
        for lin in ('receptance', 'key', 'value', 'gate', 'output'):
            k[a + f'{lin}.weight'] = (C, C)
        k[a + 'ln_x.weight'] = k[a + 'ln_x.bias'] = (C, )
        k[p + 'ffn.spatial_mix_k'] = k[p + 'ffn.spatial_mix_r'] = (1, 1, C)
        k[p + 'ffn.key.weight'] = (4 * C, C)
        k[p + 'ffn.receptance.weight'] = (C, C)
        k[p + 'ffn.value.weight'] = (C, 4 * C)
    k['backbone.ln1.weight'] = k['backbone.ln1.bias'] = (C, )
    k['head.fc.weight'] = (1000, C)
    k['head.fc.bias'] = (1000, )
    return k


@pytest.fixture(scope='module')
def fake_official():
    g = torch.Generator().manual_seed(0)
    return OrderedDict((k, torch.randn(s, generator=g)) for k, s in official_v6_keys().items())


@pytest.fixture(scope='module')
def v6_tiny():
    import mmpretrain.models  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(V6_TINY_CFG)
    import_modules_from_strings(**cfg.custom_imports)
    init_default_scope('mmpretrain')
    return MODELS.build(cfg.model)


def run_tool(*argv):
    return conv.main([str(a) for a in argv])


def test_model_keys_are_the_official_ones(v6_tiny):
    got = {k: tuple(v.shape) for k, v in v6_tiny.state_dict().items()}
    assert got == dict(official_v6_keys())


@pytest.mark.parametrize('how', [(), ('--arch', 'tiny'), ('--config', V6_TINY_CFG)])
def test_converted_checkpoint_loads_strictly(fake_official, v6_tiny, tmp_path, capsys, how):
    src, dst = tmp_path / 'vrwkv6_t_in1k_224.pth', tmp_path / 'out.pth'
    torch.save({'state_dict': fake_official, 'meta': {'mmcls_version': '0.25.0'}}, src)
    assert run_tool(src, dst, *how) == 0
    out = capsys.readouterr().out
    if '--config' not in how:
        assert 'backbone family: VRWKV6' in out
        assert 'vrwkv6-tiny_8xb128_in1k.py' in out
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    v6_tiny.load_state_dict(ckpt['state_dict'], strict=True)
    got = v6_tiny.state_dict()
    for k, v in fake_official.items():
        assert torch.equal(got[k], v), k
    assert ckpt['meta']['reference_config'] == 'vrwkv6-tiny_8xb128_in1k.py'
    assert ckpt['meta']['missing_keys'] == []


def test_bare_backbone_in_model_wrapper(fake_official, v6_tiny, tmp_path):
    bare = OrderedDict((k[len('backbone.'):] if k.startswith('backbone.') else k, v)
                       for k, v in fake_official.items())
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save({'model': bare}, src)
    assert run_tool(src, dst) == 0
    v6_tiny.load_state_dict(torch.load(dst, weights_only=True)['state_dict'], strict=True)


def test_missing_v6_key_refused(fake_official, tmp_path, capsys):
    sd = OrderedDict(fake_official)
    del sd['backbone.layers.3.att.time_faaaa']
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save({'state_dict': sd}, src)
    assert run_tool(src, dst) == 1
    err = capsys.readouterr().err
    assert 'refusing to write' in err and 'backbone.layers.3.att.time_faaaa' in err
    assert not dst.exists()


def test_wrong_family_or_arch_refused(fake_official, tmp_path, capsys):
    src = tmp_path / 'src.pth'
    torch.save({'state_dict': fake_official}, src)
    # a v6 checkpoint against the v1 model: every v6 mixer key is unknown there
    assert run_tool(src, tmp_path / 'a.pth', '--config', V1_TINY_CFG) == 1
    err = capsys.readouterr().err
    assert 'missing key' in err and 'att.spatial_decay' in err
    assert run_tool(src, tmp_path / 'b.pth', '--arch', 'large') == 1
    assert "VRWKV6 family has no 'large' model" in capsys.readouterr().err
    assert not (tmp_path / 'a.pth').exists() and not (tmp_path / 'b.pth').exists()


def test_infer_family():
    assert conv.infer_family({'backbone.layers.0.att.time_maa_x': None}) == 'vrwkv6'
    assert conv.infer_family({'backbone.layers.0.att.spatial_decay': None}) == 'vrwkv'
    assert conv.map_key('cls_token') == 'backbone.cls_token'
