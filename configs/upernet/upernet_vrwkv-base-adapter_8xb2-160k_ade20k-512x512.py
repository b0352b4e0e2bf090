# UperNet (+ auxiliary FCN head) with the VRWKV-B adapter, ADE20K, 512x512 crops, 160k
# iterations, 8 GPUs x 2 images, AMP. Paper: mIoU 49.2 single-scale (backbone 106.6M params,
# 146.0G FLOPs at 512x512).
# Translated from the official mmseg 0.30 config (OpenGVLab/Vision-RWKV,
# segmentation/configs/ade20k/upernet_vrwkv_adapter_base_512_160k_ade20k.py).
# Official weights: upernet_vrwkv_adapter_base_512_160k_ade20k.pth (HuggingFace
# OpenGVLab/Vision-RWKV). Everything not set here (data, schedule, AMP, slide inference,
# translation notes) comes from the tiny config.
#
# Pretrained backbone: the ImageNet checkpoint at pretrained/vrwkv_b_in1k_224.pth.
_base_ = ['./upernet_vrwkv-tiny-adapter_8xb2-160k_ade20k-512x512.py']

embed_dims = 768
num_layers = 12

model = dict(
    pretrained='pretrained/vrwkv_b_in1k_224.pth',
    backbone=dict(
        arch='base',
        img_size=224,
        drop_path_rate=0.3,
        init_values=1e-5,
        post_norm=True,
        key_norm=False,
        deform_num_heads=12,
        deform_ratio=0.5,
        interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]]),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))

optim_wrapper = dict(
    optimizer=dict(lr=6e-5),
    paramwise_cfg=dict(num_layers=num_layers, layer_decay_rate=0.8))
