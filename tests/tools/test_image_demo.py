"""demo/image_demo.py on the cls / det / seg demo configs (initialised checkpoints from
tests/inference_helpers.py): predictions printed with progress, pictures written (small ones
upscaled), the task taken from the config, clear errors for bad input."""
import glob
import os.path as osp
import shutil

import cv2
import pytest

pytest.importorskip('mmpretrain')

from tool_helpers import load_tool  # noqa: E402

from mmvrwkv.apis import MIN_DISPLAY_SIDE, config_task, display_scale  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def demo():
    return load_tool('image_demo', folder='demo')


def test_display_scale():
    assert display_scale(8, 8) == 32 and display_scale(8, 100) == 32
    assert display_scale(128, 200) == 2 and display_scale(300, 500) == 1
    with pytest.raises(ValueError, match='positive'):
        display_scale(0, 8)


def test_config_task():
    assert [config_task({'default_scope': s}) for s in ('mmpretrain', 'mmdet', 'mmseg')] == \
        ['cls', 'det', 'seg']
    with pytest.raises(ValueError, match=r"my\.py: cannot tell the task.*'mmvrwkv'"):
        config_task({'default_scope': 'mmvrwkv'}, name='my.py')


@pytest.mark.parametrize('task', ['cls', 'det', 'seg'])
def test_folder_to_predictions_and_pictures(task, demo, demo_case, tmp_path, capsys):
    """A folder of two images; backend: whatever the CPU picks (the demo's path is tested)."""
    case = demo_case(task)
    folder = tmp_path / 'images'
    folder.mkdir()
    for image in case.images[:2]:
        shutil.copy(image, folder)
    (folder / 'notes.txt').write_text('not an image')
    results = demo.main([case.config, case.checkpoint, str(folder),
                         '--out-dir', str(tmp_path / 'out'), '--score-thr', '0.0'])
    assert len(results) == 2 and all(results.values())
    printed = capsys.readouterr().out
    for i, image in enumerate(sorted(results), 1):
        assert f'[{i}/2] {image}: {results[image]}' in printed
    pictures = sorted(glob.glob(str(tmp_path / 'out' / 'vis' / '*')))
    assert len(pictures) == 2, pictures
    for picture in pictures:
        assert min(cv2.imread(picture).shape[:2]) >= MIN_DISPLAY_SIDE
    if task == 'cls':  # the predicted class is one of the digits
        assert all(r.split(' ')[0] in [str(d) for d in range(10)] for r in results.values())
    elif task == 'det':
        assert all('object(s) with score >= 0.0' in r for r in results.values())
    else:  # pixel shares of the classes, largest first
        assert all(r.endswith('%') for r in results.values())


def test_task_given_must_match_the_config(demo, demo_case, tmp_path):
    case = demo_case('cls')
    with pytest.raises(ValueError, match='--task det: the config is a cls config'):
        demo.main([case.config, case.checkpoint, case.images[0], '--task', 'det',
                   '--out-dir', str(tmp_path)])


def test_missing_files_and_empty_folders(demo, demo_case, tmp_path):
    case = demo_case('cls')
    out = ['--out-dir', str(tmp_path / 'out')]
    with pytest.raises(FileNotFoundError, match='checkpoint .*missing.pth'):
        demo.main([case.config, str(tmp_path / 'missing.pth'), case.images[0]] + out)
    with pytest.raises(FileNotFoundError, match='config .*nope.py'):
        demo.main([str(tmp_path / 'nope.py'), case.checkpoint, case.images[0]] + out)
    with pytest.raises(FileNotFoundError, match='inputs: .*gone.png'):
        demo.main([case.config, case.checkpoint, str(tmp_path / 'gone.png')] + out)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='inputs: folder .*empty.* holds no image'):
        demo.main([case.config, case.checkpoint, str(tmp_path / 'empty')] + out)
    assert not osp.exists(tmp_path / 'out')  # refused before any work
