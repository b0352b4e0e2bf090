# ImageNet-1k, 384 px, for the VRWKV-L 22K -> 1K fine-tune.
#
# The original (classification_internimage, timm `create_transform`) used:
#   train: RandomResizedCropAndInterpolation 384 (scale 0.08-1, ratio 3/4-4/3, bicubic)
#          -> RandomHorizontalFlip 0.5 -> ToTensor -> Normalize.
#          COLOR_JITTER 0, AUTO_AUGMENT 'none', REPROB 0: no colour jitter, no RandAugment,
#          no random erasing.
#   test:  Resize short side int(1.0 * 384) (bicubic) -> CenterCrop 384 (TEST.CROP True).
#   normalisation: ImageNet mean/std (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225), i.e. the
#          same numbers as below on the 0-255 scale.
# NOTE(translation): timm/torchvision resize and crop (PIL) vs. mmpretrain's pillow backend:
# same interpolation, same crop-parameter sampling (10 attempts, then centre-crop fallback);
# the fallback aspect-ratio clamp differs in corner cases only.
dataset_type = 'ImageNet'
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=384,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=384,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=384),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    # The original drops the last incomplete batch (DataLoader drop_last=True).
    dataset=dict(
        type=dataset_type,
        data_root='data/imagenet',
        split='train',
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
    drop_last=True,
)

val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    dataset=dict(
        type=dataset_type,
        data_root='data/imagenet',
        split='val',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))

test_dataloader = val_dataloader
test_evaluator = val_evaluator
