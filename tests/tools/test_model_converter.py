"""tools/model_converters/vrwkv2mmvrwkv.py: official checkpoint layouts -> mmpretrain
ImageClassifier of configs/vrwkv, refusals, reports, safe writing."""
import argparse
import os
import os.path as osp
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch

pytest.importorskip('mmpretrain')
pytest.importorskip('mmvrwkv.models.backbones')

from tool_helpers import ROOT, load_tool  # noqa: E402
TOOL = osp.join(ROOT, 'tools', 'model_converters', 'vrwkv2mmvrwkv.py')
TINY_CFG = osp.join(ROOT, 'configs', 'vrwkv', 'vrwkv-tiny_8xb128_in1k.py')
LARGE_CFG = osp.join(ROOT, 'configs', 'vrwkv', 'vrwkv-large_in21k-pre_8xb128_in1k-384px.py')


def _load_tool():
    return load_tool('model_converters/vrwkv2mmvrwkv')


conv = _load_tool()


def official_keys(C=192, depth=12, gamma=False, key_norm=False, grid=14, classes=1000):
    """Official mmcls key names and shapes: the state dict of the VRWKV backbone of
    OpenGVLab/Vision-RWKV, classification/mmcls_custom/models/backbones/vrwkv.py."""
    k = OrderedDict()
    k['backbone.patch_embed.projection.weight'] = (C, 3, 16, 16)
    k['backbone.patch_embed.projection.bias'] = (C, )
    k['backbone.pos_embed'] = (1, grid * grid, C)
    for i in range(depth):
        p = f'backbone.layers.{i}.'
        names = (['ln0'] if i == 0 else []) + ['ln1', 'ln2']
        for n in names:
            k[p + n + '.weight'] = (C, )
            k[p + n + '.bias'] = (C, )
        if gamma:
            k[p + 'gamma1'] = (C, )
            k[p + 'gamma2'] = (C, )
        k[p + 'att.spatial_decay'] = (C, )
        k[p + 'att.spatial_first'] = (C, )
        for m in 'kvr':
            k[p + f'att.spatial_mix_{m}'] = (1, 1, C)
        for lin in ('key', 'value', 'receptance', 'output'):
            k[p + f'att.{lin}.weight'] = (C, C)
        if key_norm:
            k[p + 'att.key_norm.weight'] = (C, )
            k[p + 'att.key_norm.bias'] = (C, )
        for m in 'kr':
            k[p + f'ffn.spatial_mix_{m}'] = (1, 1, C)
        k[p + 'ffn.key.weight'] = (4 * C, C)
        k[p + 'ffn.receptance.weight'] = (C, C)
        k[p + 'ffn.value.weight'] = (C, 4 * C)
        if key_norm:
            k[p + 'ffn.key_norm.weight'] = (4 * C, )
            k[p + 'ffn.key_norm.bias'] = (4 * C, )
    k['backbone.ln1.weight'] = (C, )
    k['backbone.ln1.bias'] = (C, )
    k['head.fc.weight'] = (classes, C)
    k['head.fc.bias'] = (classes, )
    return k


def _build(config):
    import mmpretrain.models  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(config)
    import_modules_from_strings(**cfg.custom_imports)
    init_default_scope('mmpretrain')
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def tiny():
    """(model, official state dict with random values) for VRWKV-T."""
    model = _build(TINY_CFG)
    g = torch.Generator().manual_seed(0)
    sd = OrderedDict((k, torch.randn(v.shape, generator=g))
                     for k, v in model.state_dict().items())
    return model, sd


def run_tool(*argv):
    return conv.main([str(a) for a in argv])


def check_loads(model, dst, expected):
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}
    model.load_state_dict(ckpt['state_dict'], strict=True)
    got = model.state_dict()
    for k, v in expected.items():
        assert torch.equal(got[k], v), k
    return ckpt


# --------------------------------------------------------------------------------------

def test_model_keys_are_the_official_ones(tiny):
    model, _ = tiny
    got = OrderedDict((k, tuple(v.shape)) for k, v in model.state_dict().items())
    assert dict(got) == dict(official_keys())


def _layouts(sd):
    bare = OrderedDict((k[len('backbone.'):] if k.startswith('backbone.') else k, v)
                       for k, v in sd.items())
    ii = OrderedDict((k.replace('head.fc.', 'head.'), v) for k, v in sd.items())
    ddp = OrderedDict(('module.' + k, v) for k, v in sd.items())
    return {
        'mmcls_state_dict': {'state_dict': sd, 'meta': {'mmcls_version': '0.25.0',
                                                        'CLASSES': ['a', 'b']}},
        'internimage_model': {'model': ii, 'epoch': 19, 'max_accuracy': 75.0},
        'ddp_module_prefix': {'module': ddp},
        'raw_bare_backbone': bare,
        'nested_model_state_dict': {'model': {'state_dict': ddp}},
    }


@pytest.mark.parametrize('layout', ['mmcls_state_dict', 'internimage_model',
                                    'ddp_module_prefix', 'raw_bare_backbone',
                                    'nested_model_state_dict'])
def test_convert_layouts(tiny, tmp_path, layout, capsys):
    model, sd = tiny
    src = tmp_path / 'official.pth'
    torch.save(_layouts(sd)[layout], src)
    dst = tmp_path / 'out' / 'converted.pth'
    assert run_tool(src, dst, '--arch', 'tiny') == 0
    ckpt = check_loads(model, dst, sd)
    assert ckpt['meta']['converted_from'] == 'official.pth'
    assert ckpt['meta']['missing_keys'] == []
    assert not [f for f in os.listdir(dst.parent) if f.endswith('.tmp')]


def test_config_argument(tiny, tmp_path):
    model, sd = tiny
    src = tmp_path / 'a.pth'
    torch.save({'state_dict': sd}, src)
    dst = tmp_path / 'b.pth'
    assert run_tool(src, dst, '--config', TINY_CFG) == 0
    check_loads(model, dst, sd)


def test_arch_inferred(tiny, tmp_path, capsys):
    model, sd = tiny
    src = tmp_path / 'a.pth'
    torch.save({'state_dict': sd}, src)
    assert run_tool(src, tmp_path / 'b.pth') == 0
    assert 'inferred --arch tiny' in capsys.readouterr().out
    check_loads(model, tmp_path / 'b.pth', sd)


def test_missing_key_refused(tiny, tmp_path, capsys):
    _, sd = tiny
    partial = OrderedDict(sd)
    del partial['backbone.layers.3.att.spatial_decay']
    src = tmp_path / 'partial.pth'
    torch.save({'state_dict': partial}, src)
    dst = tmp_path / 'never.pth'
    assert run_tool(src, dst, '--arch', 'tiny') == 1
    err = capsys.readouterr().err
    assert 'refusing' in err and 'backbone.layers.3.att.spatial_decay' in err
    assert not dst.exists()
    # --allow-missing writes the partial model and records what is missing
    assert run_tool(src, dst, '--arch', 'tiny', '--allow-missing') == 0
    meta = torch.load(dst, weights_only=True)['meta']
    assert meta['missing_keys'] == ['backbone.layers.3.att.spatial_decay']


def test_missing_key_refused_cli(tiny, tmp_path):
    """The real command line: nonzero exit status and the key in the message."""
    _, sd = tiny
    partial = OrderedDict(sd)
    del partial['head.fc.bias']
    src = tmp_path / 'partial.pth'
    torch.save({'state_dict': partial}, src)
    dst = tmp_path / 'never.pth'
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run([sys.executable, TOOL, str(src), str(dst), '--arch', 'tiny'],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'head.fc.bias' in proc.stderr and 'missing' in proc.stderr
    assert not dst.exists()


def test_unexpected_key_reported(tiny, tmp_path, capsys):
    model, sd = tiny
    extra = OrderedDict(sd)
    extra['backbone.layers.0.att.extra_thing'] = torch.ones(3)
    src = tmp_path / 'extra.pth'
    torch.save({'state_dict': extra}, src)
    dst = tmp_path / 'out.pth'
    assert run_tool(src, dst, '--arch', 'tiny') == 0
    out = capsys.readouterr().out
    assert 'unexpected' in out and 'backbone.layers.0.att.extra_thing' in out
    ckpt = check_loads(model, dst, sd)
    assert 'backbone.layers.0.att.extra_thing' not in ckpt['state_dict']
    assert ckpt['meta']['dropped_keys'] == ['backbone.layers.0.att.extra_thing']
    # --strict refuses it
    dst2 = tmp_path / 'strict.pth'
    assert run_tool(src, dst2, '--arch', 'tiny', '--strict') == 1
    assert 'backbone.layers.0.att.extra_thing' in capsys.readouterr().err
    assert not dst2.exists()


def test_shape_mismatch_refused(tiny, tmp_path, capsys):
    _, sd = tiny
    bad = OrderedDict(sd)
    bad['backbone.pos_embed'] = torch.zeros(1, 144, 192)  # a 192-px grid
    src = tmp_path / 'bad.pth'
    torch.save({'state_dict': bad}, src)
    assert run_tool(src, tmp_path / 'x.pth', '--arch', 'tiny') == 1
    err = capsys.readouterr().err
    assert 'backbone.pos_embed' in err and '[1, 144, 192]' in err
    # ... and accepted when the reference has that grid
    assert run_tool(src, tmp_path / 'y.pth', '--arch', 'tiny', '--img-size', '192') == 0


def test_never_overwrites(tiny, tmp_path, capsys):
    _, sd = tiny
    src = tmp_path / 'a.pth'
    torch.save({'state_dict': sd}, src)
    dst = tmp_path / 'exists.pth'
    dst.write_bytes(b'keep me')
    assert run_tool(src, dst, '--arch', 'tiny') == 1
    assert 'exists' in capsys.readouterr().err
    assert dst.read_bytes() == b'keep me'
    assert run_tool(src, dst, '--arch', 'tiny', '--overwrite') == 0
    assert torch.load(dst, weights_only=True)['state_dict'].keys() == sd.keys()


def test_not_weights_only(tiny, tmp_path, capsys):
    model, sd = tiny
    src = tmp_path / 'pickled.pth'
    torch.save({'model': sd, 'config': argparse.Namespace(lr=1)}, src)
    dst = tmp_path / 'out.pth'
    assert run_tool(src, dst, '--arch', 'tiny') == 1
    assert '--unsafe-load' in capsys.readouterr().err
    assert not dst.exists()
    assert run_tool(src, dst, '--arch', 'tiny', '--unsafe-load') == 0
    check_loads(model, dst, sd)


def test_ema_weights(tiny, tmp_path, capsys):
    model, sd = tiny
    ema = OrderedDict((k, v + 1) for k, v in sd.items())
    src = tmp_path / 'with_ema.pth'
    torch.save({'model': sd, 'model_ema': ema}, src)
    assert run_tool(src, tmp_path / 'raw.pth', '--arch', 'tiny') == 0
    assert 'EMA' in capsys.readouterr().out
    check_loads(model, tmp_path / 'raw.pth', sd)
    assert run_tool(src, tmp_path / 'ema.pth', '--arch', 'tiny', '--ema') == 0
    check_loads(model, tmp_path / 'ema.pth', ema)


def test_no_weights(tmp_path, capsys):
    src = tmp_path / 'empty.pth'
    torch.save({'epoch': 3, 'optimizer': {}}, src)
    assert run_tool(src, tmp_path / 'o.pth', '--arch', 'tiny') == 1
    assert 'no weights found' in capsys.readouterr().err


def test_map_key():
    m = conv.map_key
    assert m('backbone.layers.0.att.key.weight') == 'backbone.layers.0.att.key.weight'
    assert m('module.backbone.pos_embed') == 'backbone.pos_embed'
    assert m('layers.2.ffn.value.weight') == 'backbone.layers.2.ffn.value.weight'
    assert m('ln1.bias') == 'backbone.ln1.bias'
    assert m('head.fc.weight') == 'head.fc.weight'
    assert m('head.weight') == 'head.fc.weight'
    assert m('head.0.weight') == 'head.layers.pre_logits.weight'
    assert m('head.2.bias') == 'head.layers.head.bias'
    assert m('head.1.weight') == 'head.1.weight'  # Tanh has none: left to be reported


def test_mlp_head_checkpoint(tmp_path):
    """VRWKV-L layout ('model', head.0/head.2 MLP, key_norm, gammas, 192-px grid), on a
    tiny-width copy of the L config (the L arch at width 64, depth 2) to stay fast."""
    from mmvrwkv.models.backbones import VRWKV
    mini_large = dict(VRWKV.arch_zoo['large'], embed_dims=64, depth=2)
    cfg_path = tmp_path / 'vrwkv-large-mini.py'
    cfg_path.write_text(
        f'_base_ = {LARGE_CFG!r}\n'
        f"model = dict(backbone=dict(arch=dict(_delete_=True, **{mini_large!r}),\n"
        "                           with_cp=False),\n"
        "             head=dict(in_channels=64, hidden_dim=96, num_classes=10))\n")
    model = _build(str(cfg_path))
    g = torch.Generator().manual_seed(1)
    sd = OrderedDict((k, torch.randn(v.shape, generator=g))
                     for k, v in model.state_dict().items())
    names = {'head.layers.pre_logits.': 'head.0.', 'head.layers.head.': 'head.2.'}
    official = OrderedDict()
    for k, v in sd.items():
        for new, old in names.items():
            if k.startswith(new):
                k = old + k[len(new):]
        official[k] = v
    assert 'head.0.weight' in official and 'backbone.layers.1.ffn.key_norm.weight' in official
    assert tuple(official['backbone.pos_embed'].shape) == (1, 144, 64)
    src = tmp_path / 'vrwkv_l_like.pth'
    torch.save({'model': official}, src)
    dst = tmp_path / 'out.pth'
    assert run_tool(src, dst, '--config', cfg_path) == 0
    check_loads(model, dst, sd)
    # a 21841-way head needs --num-classes
    assert run_tool(src, tmp_path / 'o2.pth', '--config', cfg_path, '--num-classes',
                    '21841') == 1


@pytest.mark.parametrize('arch,C,depth,gamma,key_norm,grid', [
    ('small', 384, 12, True, False, 14), ('base', 768, 12, True, False, 14),
    ('large', 1024, 24, True, True, 12)])
def test_reference_arches_match_facts(arch, C, depth, gamma, key_norm, grid):
    shapes = conv.reference_shapes(conv.find_config(arch))
    want = official_keys(C, depth, gamma, key_norm, grid)
    if arch == 'large':  # MLP head instead of head.fc
        del want['head.fc.weight'], want['head.fc.bias']
        want['head.layers.pre_logits.weight'] = (3072, 1024)
        want['head.layers.pre_logits.bias'] = (3072, )
        want['head.layers.head.weight'] = (1000, 3072)
        want['head.layers.head.bias'] = (1000, )
    assert {k: tuple(v) for k, v in shapes.items()} == dict(want)




def test_arch_facts_come_from_the_arch_zoos(capsys):
    """--arch names, families and widths are the backbones' arch_zoo (no table of its own)."""
    from mmvrwkv.engine.checkpoint import conversion
    from mmvrwkv.models.backbones import VRWKV, VRWKV6
    assert conversion.FAMILIES == {'vrwkv': VRWKV, 'vrwkv6': VRWKV6}
    assert conversion.family_archs('vrwkv') == ['tiny', 'small', 'base', 'large']
    assert conversion.family_archs('vrwkv6') == ['tiny', 'small', 'base']
    for family, backbone in conversion.FAMILIES.items():
        for arch in conversion.family_archs(family):
            width = backbone.arch_zoo[arch]['embed_dims']
            weight = torch.empty(width, 3, 16, 16, device='meta')
            assert conversion.infer_arch({'backbone.patch_embed.projection.weight': weight}) \
                == arch
            assert osp.basename(conversion.find_config(arch, family)).startswith(
                f'{family}-{arch}_')
    with pytest.raises(SystemExit):
        conv.parse_args(['--help'])
    assert '--arch {base,large,small,tiny}' in capsys.readouterr().out
