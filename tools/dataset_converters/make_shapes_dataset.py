#!/usr/bin/env python
"""Generate the synthetic "shapes" scene dataset of the detection and segmentation demos, in
COCO instance format and ADE20K layout (``mmvrwkv.datasets.shapes``: layout, classes, rules).

    python tools/dataset_converters/make_shapes_dataset.py data/shapes
    python tools/dataset_converters/make_shapes_dataset.py /tmp/s --num-train 8 --num-val 4 \\
        --size 64 --seed 1
"""
import sys

from mmvrwkv.datasets.shapes import main

if __name__ == '__main__':
    sys.exit(main())
