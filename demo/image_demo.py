"""Predict on images with an mmvrwkv config and checkpoint, through the upstream inferencers.

    python demo/image_demo.py CONFIG CHECKPOINT IMAGE_OR_FOLDER [...] [--task cls|det|seg]
        [--out-dir outputs] [--device cpu] [--score-thr 0.3]

The task comes from the config's ``default_scope`` (mmpretrain: cls, mmdet: det, mmseg: seg);
``--task`` states it explicitly and is checked against the config. Each image is run by
mmpretrain's ``ImageClassificationInferencer``, mmdet's ``DetInferencer`` or mmseg's
``MMSegInferencer``; its prediction is printed (one line per image, with the count, so long
folders show their progress) and its picture written to ``OUT_DIR/vis/`` (the inferencers'
own prediction files too: ``OUT_DIR/preds/*.json`` for det, ``OUT_DIR/pred/*.png`` for seg).
Pictures of small images (the 8x8 digits) are upscaled until their shorter side is 256
pixels.

Every input is checked before any model is built: a missing file, an empty file, a file that
is not an image and a truncated image each stop the demo with one line that names the file
and the reason (exit status 2), instead of a traceback from OpenCV or PIL or a crash on the
``None`` that OpenCV returns for what it cannot decode.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

#: File endings read as images when a folder is given (as mmengine's ``list_dir_or_file``).
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


class DemoInputError(Exception):
    """A bad command-line input (missing file, not an image, ...): the command line prints
    its message and exits with status 2, without a traceback."""


class MissingInputError(DemoInputError, FileNotFoundError):
    """An input path that does not exist."""


class BadInputError(DemoInputError, ValueError):
    """An input that exists but cannot be used (not an image, truncated, empty, ...)."""


def collect_images(inputs: Sequence[str]) -> List[str]:
    """Image paths from files and folders (a folder's images, sorted, not recursive)."""
    images = []
    for path in inputs:
        if osp.isdir(path):
            found = sorted(osp.join(path, name) for name in os.listdir(path)
                           if name.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                raise BadInputError(f'inputs: folder {path!r} holds no image '
                                    f'({", ".join(IMAGE_SUFFIXES)})')
            images.extend(found)
        elif osp.isfile(path):
            images.append(path)
        else:
            raise MissingInputError(f'inputs: {path!r} is neither an image file nor a folder')
    return images


def _pil_problem(path: str) -> Optional[str]:
    """Why PIL, decoding the whole file, finds it broken (truncated, corrupt, too large), or
    None. A format PIL does not know is not a problem here (OpenCV decides)."""
    import warnings

    from PIL import Image, ImageFile, UnidentifiedImageError
    lenient = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a library may have switched it on
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            with Image.open(path) as image:
                image.load()
    except UnidentifiedImageError:
        return None
    except Image.DecompressionBombError as e:
        return f'too large to decode safely ({e})'
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        return f'truncated or corrupt ({e})'
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient
    return None


def check_image(path: str) -> Tuple[int, int]:
    """``(height, width)`` of the image file ``path``, decoded as the inferencers' pipelines
    decode it (``mmcv.imread``, OpenCV); ``BadInputError`` naming the file when it is empty,
    not an image, or truncated / corrupt (also where OpenCV would return a partial picture:
    PIL decodes the whole file as a second check)."""
    import mmcv
    if os.path.getsize(path) == 0:
        raise BadInputError(f'image {path!r}: the file is empty (0 bytes)')
    problem = _pil_problem(path)
    if problem is not None:
        raise BadInputError(f'image {path!r}: {problem}')
    try:
        array = mmcv.imread(path)
    except Exception as e:  # noqa: BLE001  (cv2.error and friends: reported by name)
        raise BadInputError(f'image {path!r}: OpenCV cannot decode it '
                            f'({type(e).__name__}: {str(e).strip().splitlines()[-1]})') from e
    if array is None or getattr(array, 'size', 0) == 0:
        raise BadInputError(f'image {path!r}: not an image OpenCV can decode (the reader the '
                            'inferencers use); is it an image file, and complete?')
    return int(array.shape[0]), int(array.shape[1])


def check_images(images: Sequence[str]) -> Dict[str, Tuple[int, int]]:
    """``{path: (height, width)}`` for every input, each checked by :func:`check_image`
    before any model is built (the first bad one raises)."""
    return {image: check_image(image) for image in images}


def resolve_task(cfg: Any, task: Optional[str]) -> str:
    """The config's task; ``ValueError`` when ``--task`` names another one."""
    from mmvrwkv.apis import TASK_SCOPES, config_task
    found = config_task(cfg, name=f'config {cfg.filename}')
    if task is not None and task != found:
        raise BadInputError(f'--task {task}: the config is a {found} config '
                            f'(default_scope={TASK_SCOPES[found]!r})')
    return found


# --------------------------------------------------------------------------------------
# one runner per task: image path -> printable prediction (the picture is written)

def _cls_runner(config: str, checkpoint: str, device: str, vis_dir: str,
                sizes: Optional[Dict[str, Tuple[int, int]]] = None, **_: Any
                ) -> Callable[[str], str]:
    from mmengine.registry import init_default_scope
    from mmpretrain.apis import ImageClassificationInferencer
    from mmpretrain.utils import progress

    from mmvrwkv.apis import display_scale
    progress.disable_progress_bar = True  # one bar per image would hide our progress lines
    # mmpretrain's inferencer builds its pipeline in the current default scope (mmdet's and
    # mmseg's set theirs): make it mmpretrain's, whatever ran before in this process
    init_default_scope('mmpretrain')
    inferencer = ImageClassificationInferencer(config, pretrained=checkpoint, device=device)

    def run(image: str) -> str:
        height, width = (sizes or {}).get(image) or check_image(image)
        result = inferencer(image, show_dir=vis_dir,
                            rescale_factor=display_scale(height, width))[0]
        return f'{result["pred_class"]} (score {result["pred_score"]:.3f})'
    return run


def _det_runner(config: str, checkpoint: str, device: str, vis_dir: str, score_thr: float,
                **_: Any) -> Callable[[str], str]:
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(config, weights=checkpoint, device=device, show_progress=False)
    classes = inferencer.model.dataset_meta['classes']

    def run(image: str) -> str:
        pred = inferencer(image, out_dir=osp.dirname(vis_dir), pred_score_thr=score_thr,
                          no_save_pred=False)['predictions'][0]
        kept = [(s, classes[label], box) for s, label, box in
                zip(pred['scores'], pred['labels'], pred['bboxes']) if s >= score_thr]
        _upscale_picture(osp.join(vis_dir, osp.basename(image)))
        text = ', '.join(f'{name} {s:.2f} [{", ".join(f"{v:.0f}" for v in box)}]'
                         for s, name, box in kept[:5])
        more = f', ... ({len(kept) - 5} more)' if len(kept) > 5 else ''
        return f'{len(kept)} object(s) with score >= {score_thr}' + (
            f': {text}{more}' if kept else '')
    return run


def _seg_runner(config: str, checkpoint: str, device: str, vis_dir: str, **_: Any
                ) -> Callable[[str], str]:
    import numpy as np
    from mmseg.apis import MMSegInferencer
    inferencer = MMSegInferencer(config, weights=checkpoint, device=device)
    inferencer.show_progress = False  # (mmengine's BaseInferencer switch; not an argument)
    classes = inferencer.model.dataset_meta['classes']

    def run(image: str) -> str:
        pred = inferencer(image, out_dir=osp.dirname(vis_dir))['predictions']
        _upscale_picture(osp.join(vis_dir, osp.basename(image)))
        labels, counts = np.unique(np.asarray(pred), return_counts=True)
        order = np.argsort(-counts)
        return ', '.join(f'{classes[labels[i]]} {100 * counts[i] / counts.sum():.1f}%'
                         for i in order)
    return run


def _upscale_picture(path: str) -> None:
    """Enlarge a written picture in place when it is small (nearest neighbour: crisp)."""
    import mmcv

    from mmvrwkv.apis import display_scale
    picture = mmcv.imread(path)
    scale = display_scale(*picture.shape[:2])
    if scale > 1:
        mmcv.imwrite(mmcv.imrescale(picture, scale, interpolation='nearest'), path)


RUNNERS: Dict[str, Callable[..., Callable[[str], str]]] = {
    'cls': _cls_runner, 'det': _det_runner, 'seg': _seg_runner}


# --------------------------------------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', help='config file (classification, detection or segmentation)')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('inputs', nargs='+', help='image files and/or folders of images')
    p.add_argument('--task', choices=sorted(RUNNERS),
                   help="default: from the config's default_scope")
    p.add_argument('--out-dir', default='outputs', help='pictures go to OUT_DIR/vis/')
    p.add_argument('--device', default=None, help='default: cuda:0 if available, else cpu')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='det: draw and print boxes with at least this score')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Run the demo; returns ``{image path: printed prediction}``."""
    args = parse_args(argv)
    for name in ('config', 'checkpoint'):
        if not osp.isfile(getattr(args, name)):
            raise MissingInputError(f'{name} {getattr(args, name)!r} does not exist')
    images = collect_images(args.inputs)
    sizes = check_images(images)

    import torch
    from mmengine.config import Config
    import mmvrwkv  # noqa: F401  (our modules, safe checkpoint loading)
    cfg = Config.fromfile(args.config)
    task = resolve_task(cfg, args.task)
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    vis_dir = osp.join(osp.abspath(args.out_dir), 'vis')
    os.makedirs(vis_dir, exist_ok=True)
    run = RUNNERS[task](config=args.config, checkpoint=args.checkpoint, device=device,
                        vis_dir=vis_dir, score_thr=args.score_thr, sizes=sizes)
    results = {}
    for i, image in enumerate(images, 1):
        results[image] = run(image)
        print(f'[{i}/{len(images)}] {image}: {results[image]}', flush=True)
    print(f'{task}: {len(images)} picture(s) in {vis_dir}')
    return results


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """The command line: :func:`main`, with a bad input (an image, or a checkpoint the gate
    refuses) reported in one line on stderr (naming the file) and exit status 2 instead of a
    traceback."""
    from mmvrwkv.apis.launch import exit_status
    from mmvrwkv.engine.checkpoint import CheckpointError
    return exit_status(lambda: main(argv), (DemoInputError, CheckpointError),
                       'image_demo.py: error: ', 2)


if __name__ == '__main__':
    sys.exit(cli())
