"""FLOPs of the deformable sampling as FLOP counting sees it: the portable ``grid_sample``
path that runs while tracing, counted by mmengine's own ``aten::grid_sampler`` handle, so the
op needs no counting node (``README.md`` beside this file, section FLOPs)."""


def ms_deform_attn_flops(B: int, Q: int, num_heads: int, head_dims: int, num_levels: int,
                         num_points: int) -> int:
    """FLOPs counted for one call on ``value [B, S, num_heads, head_dims]`` and
    ``num_levels * num_points`` points per query and head: 4 per sampled value and channel."""
    return 4 * B * Q * num_heads * head_dims * num_levels * num_points
