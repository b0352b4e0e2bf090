# Mask R-CNN + FPN with the VRWKV-B adapter, COCO 2017, 1x schedule (12 epochs),
# 8 GPUs x 2 images. Paper: box AP 46.8, mask AP 41.7 (backbone 106.6M params, 599.0G FLOPs).
# Translated from the official mmdet 2.28 config (OpenGVLab/Vision-RWKV,
# detection/configs/mask_rcnn/mask_rcnn_vrwkv_adapter_base_fpn_1x_coco.py).
# Official weights: mask_rcnn_vrwkv_adapter_base_fpn_1x_coco.pth (HuggingFace
# OpenGVLab/Vision-RWKV). Everything not set here (data, schedule, warm-up, translation
# notes) comes from the tiny config.
#
# Pretrained backbone: the ImageNet checkpoint at pretrained/vrwkv_b_in1k_224.pth.
_base_ = ['./mask-rcnn_vrwkv-tiny-adapter_fpn_1x_coco.py']

embed_dims = 768
num_layers = 12

model = dict(
    backbone=dict(
        arch='base',
        img_size=224,
        drop_path_rate=0.3,
        init_values=1e-5,
        post_norm=True,
        key_norm=False,
        deform_num_heads=12,
        deform_ratio=0.5,
        interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]],
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/vrwkv_b_in1k_224.pth',
                      prefix='backbone.')),
    neck=dict(in_channels=[embed_dims] * 4))

optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(num_layers=num_layers, layer_decay_rate=0.85))
