"""The demo datasets, written on demand (no download).

* ``digits``: scikit-learn's bundled 8x8 handwritten digits as an ImageNet-style folder
  (the classification demo), ``digits.make_digits``;
* ``shapes``: synthetic scenes of circles, rectangles and triangles in COCO instance format
  and ADE20K layout (the detection and segmentation demos), ``shapes.generate``;
* ``demo_data``: writes the dataset a demo config names (its ``demo_data``) when it is
  missing, before ``tools/train.py`` / ``tools/test.py`` build the Runner.

``tools/dataset_converters/make_digits_imagenet.py`` and ``make_shapes_dataset.py`` are the
command lines ``digits.main`` and ``shapes.main``.
"""
from .demo_data import ensure_demo_data

__all__ = ['ensure_demo_data']
