"""tools/analysis/visualize_erf.py on tiny inputs (one block, 64 px, patch 8: an 8 x 8 token
grid): the figure is written, and each model's ERF has the reach its mixing allows.

Raster reach of the uni-directional model: WKV at token t reads tokens i <= t; each of a
block's two token shifts (before the spatial and before the channel mixer) brings in tokens
up to W (one row) later. So the centre token t_c = (h/2) W + w/2 depends on no patch beyond
t_c + 2 W per block, and does reach t_c + 2 W itself (shift of the channel mixer from below
of the shift of the receptance from below). Bi-WKV, and attention, reach every patch."""
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('mmengine')
pytest.importorskip('matplotlib')

from tool_helpers import load_tool  # noqa: E402

SIZE, PATCH, GRID = 64, 8, 8
TINY = ['--img-size', str(SIZE), '--patch-size', str(PATCH), '--depth', '1', '--images', '2',
        '--batch-size', '2']


@pytest.fixture(scope='module')
def tool():
    return load_tool('analysis/visualize_erf')


def per_patch(erf):
    """[H, W] pixel ERF -> the ERF summed per patch, in raster order [GRID * GRID]."""
    return erf.reshape(GRID, PATCH, GRID, PATCH).sum(dim=(1, 3)).flatten()


@pytest.fixture(scope='module')
def erfs(tool, tmp_path_factory):
    out = tmp_path_factory.mktemp('erf')
    png, npz = str(out / 'erf.png'), str(out / 'erf.npz')
    result = tool.main(TINY + ['--baseline', 'torchvision', '--out', png, '--save-arrays', npz])
    return result, png, npz


def test_figure_and_arrays_written(erfs):
    result, png, npz = erfs
    assert list(result) == ['bi', 'uni', 'noshift', 'deit']
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert osp.getsize(png) > 10_000  # four panels and a colour bar, not an empty canvas
    saved = np.load(npz)
    for name, erf in result.items():
        assert erf.shape == (SIZE, SIZE) and torch.isfinite(erf).all() and (erf >= 0).all()
        np.testing.assert_array_equal(saved[name], erf.numpy())


def test_uni_directional_reach_ends_two_rows_after_the_centre(erfs):
    """'uni' (causal WKV + Q-Shift, 1 block): zero beyond t_c + 2W, non-zero at t_c + 2W and
    at the first patch (the causal scan reaches back over the whole grid)."""
    uni = per_patch(erfs[0]['uni'])
    t_c = (GRID // 2) * GRID + GRID // 2
    reach = t_c + 2 * GRID
    assert torch.all(uni[reach + 1:] == 0), uni[reach + 1:]
    assert uni[reach] > 0 and uni[0] > 0 and uni[t_c] == uni.max()


@pytest.mark.parametrize('name', ['bi', 'noshift', 'deit'])
def test_global_models_reach_every_patch(erfs, name):
    erf = per_patch(erfs[0][name])
    assert torch.all(erf > 0), (name, erf)


def test_noshift_differs_from_qshift_near_the_centre(erfs):
    """Q-Shift makes the four neighbour patches of the centre stand out; without it they are
    no stronger than patches far away (a random-init model: the centre dominates either way)."""
    t_c = (GRID // 2) * GRID + GRID // 2
    neighbours = [t_c - 1, t_c + 1, t_c - GRID, t_c + GRID]
    far = [0, GRID - 1, GRID * (GRID - 1)]

    def contrast(name):
        erf = per_patch(erfs[0][name])
        return erf[neighbours].mean() / erf[far].mean()
    assert contrast('bi') > 3 * contrast('noshift')


def test_checkpoint_weights_are_used(tool, tmp_path):
    """--checkpoint bi=FILE (a classifier-style state dict with 'backbone.' keys) replaces the
    random init: the ERF equals the one of the model those weights came from."""
    torch.manual_seed(123)
    model = tool.build_backbone('bi', 'tiny', SIZE, PATCH, depth=1)
    ckpt = tmp_path / 'cls.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in model.state_dict().items()}}, ckpt)
    expected = tool.effective_receptive_field(model, tool.random_images(2, SIZE, 2, seed=0))
    result = tool.main(TINY + ['--models', 'bi', '--checkpoint', f'bi={ckpt}', '--out',
                               str(tmp_path / 'e.png')])
    torch.testing.assert_close(result['bi'], expected)


def test_bad_arguments(tool, tmp_path):
    for argv in (['--checkpoint', 'bi'], ['--checkpoint', 'deit=missing.pth'],
                 ['--models', 'bi', '--checkpoint', f'uni={tmp_path}'], ['--floor', '1'],
                 ['--img-size', '8', '--patch-size', '16'], ['--images', '0']):
        with pytest.raises(SystemExit):
            tool.parse_args(argv)
    with pytest.raises(ValueError, match='model must be one of'):
        tool.build_backbone('swin')
    with pytest.raises(ValueError, match='no .jpg'):
        next(tool.folder_images(str(tmp_path), 32, 2))


def test_image_folder(tool, tmp_path):
    """--image-dir: the folder's images (any size, resized) are what the ERF averages over."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(
            tmp_path / f'{i}.png')
    batches = list(tool.folder_images(str(tmp_path), SIZE, 2))
    assert [tuple(b.shape) for b in batches] == [(2, 3, SIZE, SIZE), (1, 3, SIZE, SIZE)]
    result = tool.main(TINY + ['--models', 'bi', '--image-dir', str(tmp_path), '--out',
                               str(tmp_path / 'e.png')])
    torch.manual_seed(0)  # the tool's --seed: the same weights
    model = tool.build_backbone('bi', 'tiny', SIZE, PATCH, depth=1)
    torch.testing.assert_close(result['bi'], tool.effective_receptive_field(model, batches))
