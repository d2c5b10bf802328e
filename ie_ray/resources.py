"""Resource planning: how many GPUs an extraction actor or an estimator task asks Ray for, and how large a batch
fits, derived from the model's size (ModelInfo: n_params, hidden_size, n_layers), its dtype and GPU memory.

Why plan instead of hard-coding `num_gpus: 1`: a 135M model in fp32 needs 0.5 GB of an 80 GB GPU, so one actor
per GPU leaves the device ~99% idle; a 70B model in bf16 (140 GB) does not fit one GPU at all. Ray schedules
fractional GPUs (several actors share one device) and whole multiples (one actor owns several devices, the
model is split across them with a `device_map`). The numbers here are conservative estimates: the actor still
measures its free memory after loading the model and splits a batch further if it must (`micro_batch_size`).

Everything is a pure function of numbers, so the plan can be unit-tested without a GPU and printed ahead of a
run (`ie-ray resources --params 70e9 --dtype bfloat16 --gpu-memory-gb 80`).
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

GIB = 1024**3
PLAN_DESCRIPTION = "Print the extraction plan for a model size"
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
#: Fraction of a GPU's memory we plan to use: the rest is the CUDA context, allocator fragmentation and
#: NCCL/cuBLAS workspaces, which grow with the device and are not visible to a planner.
USABLE_FRACTION = 0.85
#: CUDA context + cuBLAS workspace per process (PyTorch 2.x on an H100: ~0.5-0.9 GB): every actor sharing a GPU pays it.
CONTEXT_BYTES = 1 * GIB
#: Most actors that share one GPU: past this, the kernels of a small model interleave without speeding up.
MAX_ACTORS_PER_GPU = 4
#: Most estimator tasks that share one GPU (critics are small; several tasks keep the device busy).
MAX_TASKS_PER_GPU = 8
#: Ray Data batch bounds: tiny batches waste kernel launches, huge ones make a retried batch expensive.
MIN_BATCH, MAX_BATCH = 8, 4096


@dataclass(frozen=True)
class ExtractPlan:
    """What one extraction actor asks Ray for, and why."""

    num_gpus: float  # 0 (CPU), a fraction 1/k (k actors share a GPU), or an integer >= 2 (model split)
    device_map: str | None  # None = whole model on one device; "auto" = split over the actor's num_gpus GPUs
    batch_size: int
    weight_bytes: int
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def weight_bytes(n_params: int, dtype: str) -> int:
    """Bytes of the model's weights in `dtype` (GGUF models are dequantised to it on load)."""
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPE_BYTES)}")
    return int(n_params) * DTYPE_BYTES[dtype]


def forward_bytes_per_sample(hidden_size: int, seq_len: int, dtype: str) -> int:
    """Peak activation memory of one sequence in an inference forward (no grad, stopped after the deepest hooked
    block, so no logits): one block's temporaries are alive at a time. Per token: the residual stream and its
    norm (2h), q/k/v and the attention output (4h), the MLP's up/gate/act (3 x 4h = 12h in gated MLPs, the
    largest family) = 18h; plus the attention probabilities, heads x seq per token (heads ~ h / 64)."""
    width = DTYPE_BYTES[dtype]
    heads = max(1, hidden_size // 64)
    return width * seq_len * (18 * hidden_size + heads * seq_len)


def captured_bytes_per_sample(hidden_size: int, n_streams: int, n_positions: int, store_dtype: str) -> int:
    """Bytes one sample adds to the object store and to Parquet: one state per captured residual stream and
    position (a block is two streams; contiguous blocks share them, `capture.streams_of_layers`)."""
    return n_streams * n_positions * hidden_size * DTYPE_BYTES[store_dtype]


def batch_size_for(free_bytes: float, per_sample_bytes: int, cap: int = MAX_BATCH) -> int:
    """Largest batch whose forward fits in half the free memory (the other half absorbs the allocator's
    fragmentation and the estimate's error), rounded down to a multiple of 8, within [MIN_BATCH, cap]."""
    fit = int(0.5 * free_bytes // max(1, per_sample_bytes))
    fit = fit - fit % 8 if fit >= 16 else fit
    return max(min(MIN_BATCH, cap), min(cap, fit))


def plan_extract(
    n_params: int,
    hidden_size: int,
    seq_len: int,
    dtype: str,
    gpu_memory_bytes: float | None,
    cpu_batch_size: int = 64,
) -> ExtractPlan:
    """Choose num_gpus per actor, a device_map and a batch size for one model.

    - No GPU in the cluster (`gpu_memory_bytes` None or 0): CPU actors, `cpu_batch_size`.
    - The model fits in a share of one GPU with its own size again free for activations: k =
      min(MAX_ACTORS_PER_GPU, usable // need) actors per GPU, each asking for 1/k of a GPU (Ray packs them).
    - It fits one GPU but not twice: one whole GPU per actor.
    - It does not fit: 2, 4 or 8 GPUs of one node per actor and `device_map="auto"` to split its blocks.
    """
    weights = weight_bytes(n_params, dtype)
    per_sample = forward_bytes_per_sample(hidden_size, seq_len, dtype)
    if not gpu_memory_bytes:
        return ExtractPlan(0.0, None, cpu_batch_size, weights, "no GPU: CPU actors")
    usable = USABLE_FRACTION * gpu_memory_bytes
    # Sharing a GPU pays off only while each actor keeps at least its weights' size again for activations
    # (large batches); a model bigger than that gets a whole GPU, and one that does not fit is split.
    need = 2 * weights + CONTEXT_BYTES + MIN_BATCH * per_sample
    if need <= usable or weights + CONTEXT_BYTES + MIN_BATCH * per_sample <= usable:
        k = max(1, min(MAX_ACTORS_PER_GPU, int(usable // need)))
        share = usable / k
        batch = batch_size_for(share - weights - CONTEXT_BYTES, per_sample)
        reason = (f"{weights / GIB:.1f} GiB of weights, {usable / GIB:.0f} GiB usable per GPU: "
                  f"{k} actor(s) per GPU")
        return ExtractPlan(round(1.0 / k, 6), None, batch, weights, reason)
    # Split: each GPU keeps a context and an activation reserve (10% of it, at least one minimum batch), and
    # the GPU count is rounded up to a divisor of 8 so that actors tile 8-GPU nodes without stranding devices.
    reserve = max(MIN_BATCH * per_sample, 0.1 * usable)
    per_gpu = usable - CONTEXT_BYTES - reserve
    n_gpus = next(n for n in (2, 4, 8) if n * per_gpu >= weights or n == 8)
    if n_gpus * per_gpu < weights:
        # one actor's GPUs must sit on one node (Ray gives an actor devices of a single node)
        raise ValueError(
            f"{weights / GIB:.0f} GiB of weights do not fit the 8 GPUs of one node ({gpu_memory_bytes / GIB:.0f} GiB "
            "each); load the model in a smaller dtype or use larger GPUs"
        )
    # the activations of a batch live on the device that runs the current block: one GPU's leftover bounds them
    leftover = usable - CONTEXT_BYTES - weights / n_gpus
    batch = batch_size_for(leftover, per_sample)
    reason = (f"{weights / GIB:.1f} GiB of weights exceed one GPU ({usable / GIB:.0f} GiB usable): "
              f"split over {n_gpus} GPUs per actor with device_map=auto")
    return ExtractPlan(float(n_gpus), "auto", batch, weights, reason)


def critic_params(dim: int, n_layers: int, min_width: int) -> int:
    """Parameters of one critic on `dim`-wide x and y: the estimator's own funnel widths (2*dim -> ... -> 1)."""
    from ie_ray.estimators.critic import funnel_widths

    widths = funnel_widths(2 * dim, n_layers, min_width)
    fan_ins = [2 * dim, *widths[:-1]]
    return sum(i * o + o for i, o in zip(fan_ins, widths))


def critic_flops_per_pair(dim: int, n_layers: int, min_width: int) -> int:
    """Forward FLOPs of one critic evaluation (2 per multiply-add)."""
    return 2 * critic_params(dim, n_layers, min_width)


def estimator_task_bytes(n_estimators: int, n_samples: int, dim: int, n_layers: int, min_width: int,
                         batch_size: int | None) -> int:
    """GPU memory of one estimator task: states (x and y, fp32), critic weights + grads + 2 Adam moments,
    and the activations of a training step (joint + marginal pairs through every layer, kept for backward)."""
    from ie_ray.estimators.critic import funnel_widths

    states = n_estimators * n_samples * 2 * dim * 4
    params = n_estimators * critic_params(dim, n_layers, min_width) * 4 * 4
    rows = 2 * (batch_size or n_samples)
    activations = n_estimators * rows * (2 * dim + sum(funnel_widths(2 * dim, n_layers, min_width))) * 4 * 2
    return states + params + activations


def plan_estimator_gpus(task_bytes: int, gpu_memory_bytes: float | None) -> float:
    """num_gpus per estimator task: the smallest 1/k share (k <= MAX_TASKS_PER_GPU) that holds the task, a whole
    GPU when it needs most of one, and 0 on a cluster without GPUs."""
    if not gpu_memory_bytes:
        return 0.0
    usable = USABLE_FRACTION * gpu_memory_bytes
    need = task_bytes + CONTEXT_BYTES
    if need > usable:
        raise ValueError(
            f"one estimator task needs {need / GIB:.1f} GiB, more than one GPU ({usable / GIB:.0f} GiB usable); "
            "lower reduce.estimators_per_task or the estimator batch_size"
        )
    k = max(1, min(MAX_TASKS_PER_GPU, int(usable // need)))
    return round(1.0 / k, 6)


def estimator_gpus(num_gpus_per_task: float | str, params, n_estimators: int, n_samples: int, dim: int) -> float:
    """The reduce stage's num_gpus per task: the config's number, or for `auto` the GPU share that holds one
    task of `n_estimators` critics on `n_samples` pairs of `dim`-wide states (0 on a cluster without GPUs)."""
    if num_gpus_per_task != "auto":
        return float(num_gpus_per_task)
    gpu_memory = gpu_memory_from_cluster()
    if not gpu_memory:
        return 0.0
    dims = min(dim, params.max_dims) if params.max_dims else dim
    task = estimator_task_bytes(n_estimators, n_samples, dims, params.n_layers, params.min_width, params.batch_size)
    return plan_estimator_gpus(task, gpu_memory)


def gpu_memory_from_cluster() -> float | None:
    """Total memory of one GPU of the connected Ray cluster, in bytes, measured by a 1-GPU task on a GPU node;
    None when the cluster has no GPU right now. The IE_RAY_GPU_MEMORY_GB environment variable overrides the
    probe: on an autoscaling cluster the GPU workers may not exist yet when the job plans its actors."""
    import os

    import ray

    override = os.environ.get("IE_RAY_GPU_MEMORY_GB")
    if override:
        return float(override) * GIB
    if not ray.is_initialized() or ray.cluster_resources().get("GPU", 0) < 1:
        return None

    @ray.remote(num_gpus=1, num_cpus=0)
    def probe() -> int:
        import torch

        return int(torch.cuda.get_device_properties(0).total_memory) if torch.cuda.is_available() else 0

    return float(ray.get(probe.remote())) or None


def micro_batch_size(free_bytes: float, per_sample_bytes: int, requested: int) -> int:
    """Inside an actor: how many rows of a Ray Data batch go through one forward, given the device's measured
    free memory after the model loaded (never more than the batch, never less than one row)."""
    return max(1, min(requested, int(0.5 * free_bytes // max(1, per_sample_bytes))))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ie-ray resources` options (kept here so cli.py only wires the subcommand)."""
    parser.add_argument("--params", type=float, required=True, help="parameter count, e.g. 70e9")
    parser.add_argument("--hidden", type=int, default=8192, help="hidden size (default: %(default)s)")
    parser.add_argument("--seq-len", type=int, default=16, help="tokens per sequence (default: %(default)s)")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPE_BYTES))
    parser.add_argument("--gpu-memory-gb", type=float, default=80.0, help="memory of one GPU (default: %(default)s)")


def main_from_args(args: argparse.Namespace) -> int:
    plan = plan_extract(int(args.params), args.hidden, args.seq_len, args.dtype, args.gpu_memory_gb * GIB)
    for key, value in plan.to_dict().items():
        print(f"{key}: {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m ie_ray.resources`, the older spelling of `ie-ray resources`."""
    parser = argparse.ArgumentParser(prog="ie-ray resources", description=PLAN_DESCRIPTION)
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())


#: GPU share of one smoothed-MI task under `auto`: a task holds one layer's states plus `memory_mb` (512 MB by
#: default) of chunked work arrays, so a quarter of any data-centre GPU holds one with room to spare.
SMOOTHED_GPU_SHARE: float = 0.25


def smoothed_gpus(num_gpus_per_task: float | str) -> float:
    """num_gpus of a smoothed-MI / entropy-limit layer task: the config's number, or for `auto` a
    SMOOTHED_GPU_SHARE of a GPU when the cluster has one (0 otherwise: the task runs on its CPUs)."""
    if num_gpus_per_task != "auto":
        return float(num_gpus_per_task)
    return SMOOTHED_GPU_SHARE if gpu_memory_from_cluster() else 0.0
