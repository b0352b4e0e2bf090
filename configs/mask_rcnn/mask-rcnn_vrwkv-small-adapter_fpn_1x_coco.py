# Mask R-CNN + FPN with the VRWKV-S adapter, COCO 2017, 1x schedule (12 epochs),
# 8 GPUs x 2 images. Paper: box AP 44.8, mask AP 40.2 (backbone 29.3M params, 189.9G FLOPs).
# Translated from the official mmdet 2.28 config (OpenGVLab/Vision-RWKV,
# detection/configs/mask_rcnn/mask_rcnn_vrwkv_adapter_small_fpn_1x_coco.py).
# Official weights: mask_rcnn_vrwkv_adapter_small_fpn_1x_coco.pth (HuggingFace
# OpenGVLab/Vision-RWKV). Everything not set here (data, schedule, warm-up, translation
# notes) comes from the tiny config.
#
# Pretrained backbone: the ImageNet checkpoint at pretrained/vrwkv_s_in1k_224.pth.
_base_ = ['./mask-rcnn_vrwkv-tiny-adapter_fpn_1x_coco.py']

embed_dims = 384
num_layers = 12

model = dict(
    backbone=dict(
        arch='small',
        img_size=224,
        drop_path_rate=0.2,
        init_values=1e-5,  # small cls was trained with gamma init 1; the loaded gammas replace this
        post_norm=True,
        key_norm=False,
        deform_num_heads=6,
        deform_ratio=1.0,
        interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]],
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/vrwkv_s_in1k_224.pth',
                      prefix='backbone.')),
    neck=dict(in_channels=[embed_dims] * 4))

optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(num_layers=num_layers, layer_decay_rate=0.85))
