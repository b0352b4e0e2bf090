# VRWKV-L, ImageNet-22K pre-trained (192 px) -> ImageNet-1k fine-tune at 384 px, 20 epochs,
# 8 GPUs x 128 images.
# Translated from the official InternImage/timm-style recipe (OpenGVLab/Vision-RWKV,
# classification_internimage/configs/vrwkv_l_22kto1k_384.yaml + config.py defaults +
# optimizer.py + main.py).
# Official weights (HuggingFace OpenGVLab/Vision-RWKV):
#   vrwkv_l_in22k_192.pth   ImageNet-22K pre-training (21841-way head), the starting point
#   vrwkv_l_22kto1k_384.pth result of this fine-tune (86.0 top-1)
# Convert them with tools/model_converters/vrwkv2mmvrwkv.py, e.g.
#   ... vrwkv_l_22kto1k_384.pth OUT.pth --arch large
#   ... vrwkv_l_in22k_192.pth IN22K.pth --arch large --num-classes 21841
_base_ = [
    '../_base_/models/vrwkv-p16_classifier.py',
    '../_base_/datasets/imagenet_bs128_vrwkv_384.py',
    '../_base_/default_runtime_vrwkv_cls.py',
]

# The base's VRWKV classifier (GAP neck, init) at size L with an MLP head.
model = dict(
    backbone=dict(
        # embed_dims 1024, depth 24, post-norm, layer scale 1e-5, key_norm. The arch's
        # learned pos-embed keeps the 12 x 12 grid of the 192-px pre-training (img_size 192);
        # it is resized (bicubic) to the 24 x 24 grid of the 384-px inputs on the fly.
        arch='large',
        drop_path_rate=0.1,
        with_cp=True),  # USE_CHECKPOINT: gradient checkpointing of every block
    # The original head is nn.Sequential(Linear(1024, 3072), Tanh(), Linear(3072, classes))
    # on the pooled feature. mmpretrain's VisionTransformerClsHead with hidden_dim set is
    # exactly that (layers.pre_logits -> layers.act -> layers.head, applied to the last
    # backbone output, which is the pooled [B, C] tensor here), so no new head class is needed.
    # Checkpoint keys: head.0.* -> head.layers.pre_logits.*, head.2.* -> head.layers.head.*.
    # Loss: the base's LabelSmoothLoss(label_smooth_val=0.1, mode='original'). The original
    # uses SoftTargetCrossEntropy on timm-Mixup targets built with label_smoothing 0.1
    # (on = 0.9 + 0.1/K, off = 0.1/K, then mixed). Smoothing a mixed one-hot target with
    # mode='original' gives the identical target.
    # NOTE(translation): the original applies no init at all (its _init_weights call is
    # commented out), every head weight comes from the 22K checkpoint. Here the classifier
    # init_cfg of the base initialises head.layers.head (the head's own init_cfg is None),
    # and VisionTransformerClsHead.init_weights always re-initialises pre_logits with a
    # LeCun-normal; both are overwritten when the pre-trained weights are loaded.
    head=dict(
        type='VisionTransformerClsHead',
        in_channels=1024,
        hidden_dim=3072,
        act_cfg=dict(type='Tanh')),
    # timm Mixup(mixup_alpha 0.8, cutmix_alpha 1.0, prob 0.5, switch_prob 0, mode 'batch'):
    # with switch_prob 0 timm never picks CutMix, so CutMix is dead in the original; half
    # of the batches get Mixup(0.8), the other half nothing. RandomBatchAugment with
    # probs=0.5 does exactly that (the remaining 0.5 is "no augment").
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8)], probs=0.5),
)

# ---------------------------------------------------------------------------------------
# optimizer: AdamW, BASE_LR 5e-6 / WARMUP_LR 5e-9 / MIN_LR 5e-8 for 512 images, linearly
# scaled by total_batch / 512 = 2 in the original -> 1e-5 / 1e-8 / 1e-7 for 8 x 128.
optim_wrapper = dict(
    # AMP: the original runs native autocast float16 (AMP_OPT_LEVEL O1, AMP_TYPE float16)
    # with a dynamic GradScaler (timm NativeScaler); the grads are unscaled before clipping
    # in both.
    # NOTE(translation): the original also registers DDP's fp16 gradient-compression comm
    # hook (gradients all-reduced in fp16); mmengine's DDP wrapper has no such option here,
    # gradients are all-reduced in fp32.
    # NOTE(translation): the original Bi-WKV wrapper runs the WKV op in fp32 under autocast;
    # whether mmvrwkv's op runs in fp16/fp32 under autocast is decided by mmvrwkv.ops.
    type='AmpOptimWrapper',
    dtype='float16',
    loss_scale='dynamic',
    optimizer=dict(
        type='AdamW',
        lr=5e-6 * 1024 / 512,  # = 1e-5
        weight_decay=0.05,
        eps=1e-8,
        betas=(0.9, 0.999)),
    # Original (optimizer.py, param_groups_lrd_vrwkv): every 1-D parameter gets no weight
    # decay (LayerNorm weights/biases, all biases, layer-scale gamma1/gamma2) EXCEPT
    # att.spatial_decay and att.spatial_first, which keep 0.05; all parameters with more
    # dims (Linear/Conv weights, spatial_mix_* [1,1,C], pos_embed [1,N,C]) get 0.05.
    # flat_decay_mult=0 is mmengine's "1-D params" rule and custom_keys take precedence over
    # it, so this is exact. Layer-wise lr decay is off in the original (LR_LAYER_DECAY False).
    paramwise_cfg=dict(
        flat_decay_mult=0.0,
        custom_keys={
            '.spatial_decay': dict(decay_mult=1.0),
            '.spatial_first': dict(decay_mult=1.0),
        }),
    clip_grad=dict(max_norm=1.0),
)

# timm CosineLRScheduler stepped every iteration (t_in_epochs False): linear warm-up from
# WARMUP_LR 1e-8 to 1e-5 over 2 epochs, cosine to MIN_LR 1e-7 (ratio 1e-2).
# NOTE(translation): classification_internimage/lr_scheduler.py is not in the released
# repository snapshot we have; its config.py has no WARMUP_PREFIX key, so we assume the
# Swin-era builder (t_initial = all steps, warmup_prefix False): one cosine over all 20
# epochs from step 0 that the warm-up replaces for the first 2 epochs. The two overlapping
# schedulers below give exactly that cosine after the warm-up; during the warm-up they give
# (linear factor x cosine) instead of timm's plain linear ramp to 1e-5, up to 2.4 % lower
# at the end of the warm-up (timm then steps down by those 2.4 %; here it is continuous).
# LinearLR's start_factor 1e-3 = WARMUP_LR / BASE_LR.
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=2,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min_ratio=1e-2,  # MIN_LR 1e-7 for lr 1e-5
        by_epoch=True,
        begin=0,
        end=20,
        convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=20, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# The original scaled all three lrs linearly with the total batch size.
auto_scale_lr = dict(base_batch_size=1024)

# EMA of the weights, decay 0.9999 every optimizer step (timm ModelEma). mmengine's
# ExponentialMovingAverage uses momentum = 1 - decay:
#   ema = (1 - momentum) * ema + momentum * param.
# NOTE(translation): mmengine validates and saves the EMA weights (swapped in by EMAHook);
# the original validated both the raw and the EMA model every epoch and reported both.
# timm ModelEma also averages buffers; VRWKV has no buffers, so update_buffers is moot.
custom_hooks = [
    dict(
        type='EMAHook',
        ema_type='ExponentialMovingAverage',
        momentum=1e-4,
        update_buffers=True,
        priority='ABOVE_NORMAL'),
]

# Start from the converted 22K checkpoint (pos-embed grid 12 x 12 = img_size 192, MLP head
# 1024 -> 3072 -> 21841). It fits only in part, on purpose: the 21841-way head.layers.head
# does not fit the 1000-way one and keeps its init; everything else (head.layers.pre_logits
# included) loads, pos_embed resized to the 24 x 24 grid. Such a load is refused unless it
# is asked for, so ask for it explicitly:
#   tools/train.py CONFIG --allow-partial \
#       --cfg-options load_from=work_dirs/pretrained/vrwkv_l_in22k_192_mmvrwkv.pth
# NOTE(translation): for 21841 -> 1000 classes the original copies the matching rows of
# the 22K classifier (meta_data/map22kto1k.txt) into the new head; here head.layers.head
# starts from the init above instead.
load_from = None
