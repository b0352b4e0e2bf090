# Detection demo with the VRWKV6-T adapter: configs/demo/mask-rcnn_vrwkv-tiny-adapter_fpn_shapes.py
# (Mask R-CNN + FPN on the synthetic shapes dataset, CPU, from scratch) with the VRWKV6-T
# backbone of configs/mask_rcnn/mask-rcnn_vrwkv6-tiny-adapter_fpn_1x_coco.py.
#     python tools/run_demo.py --task det --model vrwkv6
# Data, heads, schedule and optimizer are the VRWKV demo's; its mAP figures were measured
# with VRWKV-T, not with this backbone.
_base_ = ['./mask-rcnn_vrwkv-tiny-adapter_fpn_shapes.py']

model = dict(
    backbone=dict(
        type='mmvrwkv.VRWKV6Adapter',
        # full VRWKV6-T: C 192, depth 12, 3 heads, no layer scale, patch 16
        arch='tiny',
        shift_mode='q_shift_multihead'))
