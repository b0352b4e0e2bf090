"""demo/image_demo.py on the cls / det / seg demo configs (initialised checkpoints from
tests/inference_helpers.py): predictions printed with progress, pictures written (small ones
upscaled), the task taken from the config, clear errors for bad input."""
import glob
import os.path as osp
import re
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


# --------------------------------------------------------------------------------------
# bad image files (issue 21): a clear error naming the file, before any model is built


def _bad_images(folder):
    """A non-image with an image name, a truncated PNG and JPEG, an empty file, and a good
    PNG to cut from."""
    import numpy as np
    picture = (np.random.default_rng(0).random((40, 50, 3)) * 255).astype('uint8')
    good = {ext: folder / f'good.{ext}' for ext in ('png', 'jpg')}
    for path in good.values():
        assert cv2.imwrite(str(path), picture)
    bad = {'text': folder / 'notes.png', 'empty': folder / 'empty.jpg',
           'trunc_png': folder / 'cut.png', 'trunc_jpg': folder / 'cut.jpg'}
    bad['text'].write_text('not an image, only text named like one')
    bad['empty'].write_bytes(b'')
    for kind, ext in (('trunc_png', 'png'), ('trunc_jpg', 'jpg')):
        data = good[ext].read_bytes()
        bad[kind].write_bytes(data[:len(data) // 2])
    return good, bad


BAD_IMAGE_REASONS = {'text': 'not an image OpenCV can decode',
                     'empty': r'the file is empty \(0 bytes\)',
                     'trunc_png': 'truncated or corrupt', 'trunc_jpg': 'truncated or corrupt'}


@pytest.mark.parametrize('kind', sorted(BAD_IMAGE_REASONS))
def test_bad_image_files_are_named(kind, demo, tmp_path):
    """A non-image, an empty file and truncated PNG / JPEG files: BadInputError (a ValueError)
    naming the file and the reason, raised before the config is even read (the config and
    checkpoint here are empty placeholder files) and before the output folder exists. The
    unprotected path, OpenCV as the inferencers' pipelines call it, returns None for these
    (the old demo then crashed on None.shape) or raises cv2.error (empty file)."""
    import mmcv
    good, bad = _bad_images(tmp_path)
    path = str(bad[kind])
    try:
        assert mmcv.imread(path) is None
    except cv2.error:
        assert kind == 'empty'
    config, checkpoint = tmp_path / 'placeholder.py', tmp_path / 'placeholder.pth'
    config.write_text('')
    checkpoint.write_bytes(b'')
    out = ['--out-dir', str(tmp_path / 'out')]
    with pytest.raises(demo.BadInputError,
                       match=f"image '{re.escape(path)}': {BAD_IMAGE_REASONS[kind]}"):
        demo.main([str(config), str(checkpoint), str(good['png']), path] + out)
    assert issubclass(demo.BadInputError, ValueError)
    assert not osp.exists(tmp_path / 'out')
    assert demo.check_images([str(p) for p in good.values()]) == {
        str(good['png']): (40, 50), str(good['jpg']): (40, 50)}


def test_bad_image_in_a_folder_is_named(demo, tmp_path):
    """A folder whose .jpg is truncated: the error names that file, not the folder."""
    good, bad = _bad_images(tmp_path)
    folder = tmp_path / 'images'
    folder.mkdir()
    shutil.copy(good['png'], folder / 'a.png')
    shutil.copy(bad['trunc_jpg'], folder / 'b.jpg')
    with pytest.raises(demo.BadInputError, match=r"image '.*images/b\.jpg': truncated"):
        demo.check_images(demo.collect_images([str(folder)]))


def test_command_line_bad_image_exit_status(tmp_path):
    """The script itself on a truncated image: exit status 2 and one line on stderr naming
    the file, no traceback."""
    import subprocess
    import sys

    from tool_helpers import ROOT
    _, bad = _bad_images(tmp_path)
    (tmp_path / 'c.py').write_text('')
    (tmp_path / 'c.pth').write_bytes(b'')
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'demo', 'image_demo.py'),
                           str(tmp_path / 'c.py'), str(tmp_path / 'c.pth'),
                           str(bad['trunc_jpg']), '--out-dir', str(tmp_path / 'out')],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert f"image_demo.py: error: image '{bad['trunc_jpg']}': truncated or corrupt" in proc.stderr


def test_command_line_refused_checkpoint_exit_status(tmp_path):
    """The script itself with a good image and an empty .pth: the gate's refusal comes as one
    line on stderr naming the checkpoint, exit status 2, no traceback."""
    import subprocess
    import sys

    from tool_helpers import CFG, ROOT
    import numpy as np
    from PIL import Image
    image = tmp_path / 'ok.png'
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'demo', 'image_demo.py'), CFG,
                           str(empty), str(image), '--out-dir', str(tmp_path / 'out')],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert f'image_demo.py: error: {empty}: the file is empty' in proc.stderr, proc.stderr
