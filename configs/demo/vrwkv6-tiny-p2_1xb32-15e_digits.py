# Classification demo with VRWKV6-T: configs/demo/vrwkv-tiny-p2_1xb32-15e_digits.py
# (scikit-learn digits, 8x8 images, patch 2 -> 4x4 tokens, 15 epochs on CPU) with the
# full-size VRWKV6-T backbone (C 192, depth 12, 3 heads of 64 channels) in place of VRWKV-T.
#     python tools/run_demo.py --model vrwkv6
_base_ = ['./vrwkv-tiny-p2_1xb32-15e_digits.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmvrwkv.VRWKV6', arch='tiny', img_size=8, patch_size=2, drop_path_rate=0.1))
