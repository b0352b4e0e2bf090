"""What the FLOP analysis runs: the input size a config implies, the image channels, and the
forward calls to try (:func:`forward_candidates`)."""
import inspect
from typing import Any, Callable, List, Optional, Tuple

DEFAULT_SIZE = 224


def _as_hw(size, order: str) -> Optional[Tuple[int, int]]:
    """``size`` (int or pair in ``order`` 'wh' or 'hw') -> (H, W), None if not a size."""
    if isinstance(size, bool):
        return None
    if isinstance(size, int):
        return (size, size) if size > 0 else None
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        return (int(size[1]), int(size[0])) if order == 'wh' else (int(size[0]), int(size[1]))
    return None


def _test_pipeline(cfg) -> Optional[list]:
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    dataset = loader.get('dataset') if isinstance(loader, dict) else None
    for _ in range(4):  # dataset wrappers nest the real dataset under 'dataset'
        if not isinstance(dataset, dict):
            break
        if isinstance(dataset.get('pipeline'), (list, tuple)):
            return list(dataset['pipeline'])
        dataset = dataset.get('dataset')
    pipeline = cfg.get('test_pipeline')
    return list(pipeline) if isinstance(pipeline, (list, tuple)) else None


def default_input_size(cfg) -> Tuple[Tuple[int, int], str]:
    """(H, W) for the analysis and a sentence saying where it comes from: the final size of
    the test pipeline when it is fixed (``CenterCrop``, a ``Resize`` without ``keep_ratio``),
    else the config's ``crop_size`` (mmseg), else the box a keep-ratio ``Resize`` fits images
    into (mmdet), else :data:`DEFAULT_SIZE`."""
    pipeline = _test_pipeline(cfg)
    size, source = None, None
    box, box_source = None, None  # the box a keep-ratio Resize fits images into (mmdet)
    for t in pipeline or []:
        if not isinstance(t, dict):
            continue
        name = str(t.get('type', '')).split('.')[-1]
        if name == 'CenterCrop':  # mmcv/mmpretrain: crop_size int or (w, h)
            hw = _as_hw(t.get('crop_size'), 'wh')
            size, source = hw, f'test pipeline CenterCrop crop_size={t.get("crop_size")!r}'
        elif name in ('Resize', 'RandomResize') and 'scale' in t:  # scale is (w, h)
            hw = _as_hw(t.get('scale'), 'wh')
            if t.get('keep_ratio', False):
                size, source = None, None
                box, box_source = hw, (f'test pipeline {name} scale={t.get("scale")!r} '
                                       '(keep_ratio: the full box, as mmdet FLOPs tables use)')
            else:
                size, source = hw, f'test pipeline {name} scale={t.get("scale")!r}'
        elif name in ('ResizeEdge', 'RandomResizedCrop', 'RandomChoiceResize', 'TestTimeAug'):
            size, source = None, None  # the size after this step is not fixed
    if size is not None:
        return size, source
    hw = _as_hw(cfg.get('crop_size'), 'hw')  # mmseg configs: crop_size = (h, w)
    if hw is not None:
        return hw, f'config crop_size={cfg.get("crop_size")!r}'
    if box is not None:
        return box, box_source
    return (DEFAULT_SIZE, DEFAULT_SIZE), (f'default {DEFAULT_SIZE} (the test pipeline does '
                                          'not fix the input size)')


def in_channels(model) -> int:
    """Image channels the model takes (backbone's ``in_channels``, else the preprocessor's
    mean, else 3)."""
    for obj in (getattr(model, 'backbone', None), model):
        c = getattr(obj, 'in_channels', None)
        if isinstance(c, int) and not isinstance(c, bool) and c > 0:
            return c
    mean = getattr(getattr(model, 'data_preprocessor', None), 'mean', None)
    if mean is not None and getattr(mean, 'numel', None) is not None and mean.numel() > 1:
        return int(mean.numel())
    return 3


def pad_divisor(model) -> int:
    """The data preprocessor's ``pad_size_divisor`` (1 when it has none)."""
    d = getattr(getattr(model, 'data_preprocessor', None), 'pad_size_divisor', 1)
    return int(d) if isinstance(d, int) and d > 1 else 1


class ForwardAs:
    """Temporarily make ``module(x)`` run ``fn(x)`` (so the analyzer traces ``fn`` while module
    names stay those of ``module``)."""

    def __init__(self, module, fn: Callable) -> None:
        self.module, self.fn = module, fn

    def __enter__(self):
        self._had = 'forward' in self.module.__dict__
        self._old = self.module.__dict__.get('forward')
        self.module.forward = self.fn
        return self.module

    def __exit__(self, *exc) -> None:
        if self._had:
            self.module.forward = self._old
        else:
            del self.module.forward


def _meta_data_samples(H: int, W: int) -> list:
    from mmengine.structures import BaseDataElement
    meta = dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=(H, W),
                batch_input_shape=(H, W), scale_factor=(1.0, 1.0), flip=False,
                flip_direction=None)
    return [BaseDataElement(metainfo=meta)]


def forward_candidates(model, H: int, W: int, backbone_only: bool,
                       forward: str) -> List[Tuple[str, Any, Any]]:
    """[(description, module to analyse, fn(x))] to try in order: ``model.backbone(x)``
    (``backbone_only``); else for ``forward`` 'auto' / 'tensor' ``model(x, mode='tensor')``
    and the same with a data sample of image meta only (two-stage detectors), and for 'auto'
    / 'feat' ``model.extract_feat(x)``."""
    if backbone_only:
        backbone = getattr(model, 'backbone', None)
        if backbone is None:
            raise ValueError('--backbone-only: the model has no attribute "backbone"')
        return [('model.backbone(x)', backbone, backbone.forward)]
    cls_forward = type(model).forward.__get__(model)
    try:
        takes_mode = 'mode' in inspect.signature(cls_forward).parameters
    except (TypeError, ValueError):
        takes_mode = False
    cands = []
    if forward in ('auto', 'tensor'):
        if takes_mode:
            cands.append(("model(x, mode='tensor')", model,
                          lambda x: cls_forward(x, mode='tensor')))
            cands.append(("model(x, data_samples=[image meta only], mode='tensor')", model,
                          lambda x: cls_forward(x, _meta_data_samples(H, W), mode='tensor')))
        else:
            cands.append(('model(x)', model, cls_forward))
    if forward in ('auto', 'feat'):
        if hasattr(model, 'extract_feat'):
            cands.append(('model.extract_feat(x)', model, model.extract_feat))
        elif forward == 'feat':
            raise ValueError('--forward feat: the model has no extract_feat method')
    return cands
