"""Write scikit-learn's bundled digits (1,797 real 8x8 handwritten digits, no download) as a
small ImageNet-style dataset that mmpretrain reads unchanged (``mmvrwkv.datasets.digits``).

    python tools/dataset_converters/make_digits_imagenet.py data/digits
        [--val-fraction 0.2] [--seed 0] [--force]
"""
from mmvrwkv.datasets.digits import main

if __name__ == '__main__':
    main()
