"""Hook capture of block input/output (`resid_pre`/`resid_post`) on every tiny family, checked against a normal
forward with `output_hidden_states=True`; padding (left/right, BOS prefix), position errors and the early stop."""

from __future__ import annotations

import pytest
import torch

from ie_ray.capture import (PaddedBatch, absolute_positions, capture_block_states, capture_stream_states, pad_batch,
                            streams_of_layers)
from ie_ray.models import TINY_FAMILIES, ModelSpec, load_model

ATOL = 1e-5

# Tiny-tokenizer ids: " Russia, Canada, China," etc. are 2-token shots (entity, ","); the exact ids do not matter,
# only that they are valid ids of the 1,496-token vocabulary and not special tokens (0, 1, 2).
SAME_LENGTH = [
    [1172, 14, 1076, 14, 1230, 14],
    [1065, 14, 1246, 14, 1168, 14],
    [1230, 14, 1172, 14, 1065, 14],
]
# Different lengths (7, 4, 3) so that left and right padding put real tokens in different columns.
RAGGED = [
    [1172, 14, 1076, 14, 1230, 14, 1065],
    [1065, 14, 1246, 14],
    [1168, 14, 33],
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def tiny(request):
    return load_model(ModelSpec(f"tiny-{request.param}"))


def _reference_hidden_states(lm, batch: PaddedBatch) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        out = lm.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            output_hidden_states=True,
            use_cache=False,
        )
    return out.hidden_states


def _n_hooks(lm) -> int:
    return sum(len(b._forward_hooks) + len(b._forward_pre_hooks) for b in lm.blocks)


# --- pad_batch / absolute_positions ------------------------------------------------------------------------


def test_pad_batch_right_and_left_layout() -> None:
    right = pad_batch([[5, 6, 7], [8]], pad_id=2, padding_side="right")
    assert right.input_ids.tolist() == [[5, 6, 7], [8, 2, 2]]
    assert right.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert right.position_ids[:, :1].tolist() == [[0], [0]]
    assert right.position_ids[0].tolist() == [0, 1, 2]
    assert right.n_prefix == 0

    left = pad_batch([[5, 6, 7], [8]], pad_id=2, padding_side="left")
    assert left.input_ids.tolist() == [[5, 6, 7], [2, 2, 8]]
    assert left.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    # the single real token of row 1 sits in column 2 but must see position 0, as it would unpadded
    assert left.position_ids[1, 2].item() == 0
    assert left.position_ids[0].tolist() == [0, 1, 2]


def test_pad_batch_bos_prefix() -> None:
    batch = pad_batch([[5, 6], [8]], pad_id=2, padding_side="left", bos_id=0)
    assert batch.n_prefix == 1
    assert batch.input_ids.tolist() == [[0, 5, 6], [2, 0, 8]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [0, 1, 1]]
    assert batch.position_ids[1, 1:].tolist() == [0, 1]
    # content position 0 = the token right after BOS, in each row's own column
    assert absolute_positions(batch, [0]).tolist() == [[1], [2]]


def test_absolute_positions_left_and_right() -> None:
    seqs = [[5, 6, 7, 9], [8, 4]]
    right = pad_batch(seqs, pad_id=2, padding_side="right")
    left = pad_batch(seqs, pad_id=2, padding_side="left")
    assert absolute_positions(right, [0, 1]).tolist() == [[0, 1], [0, 1]]
    assert absolute_positions(left, [0, 1]).tolist() == [[0, 1], [2, 3]]
    # the ids found at those columns are the content tokens 0 and 1 of each row
    for batch in (right, left):
        index = absolute_positions(batch, [0, 1])
        gathered = batch.input_ids[torch.arange(2)[:, None], index]
        assert gathered.tolist() == [[5, 6], [8, 4]]


@pytest.mark.parametrize("side", ["left", "right"])
def test_position_out_of_range_names_position_and_length(side: str) -> None:
    batch = pad_batch(RAGGED, pad_id=2, padding_side=side)
    with pytest.raises(ValueError, match=r"position 3 requested but a sequence has only 3 tokens"):
        absolute_positions(batch, [0, 3])
    assert absolute_positions(batch, [2]).shape == (3, 1)


def test_position_out_of_range_does_not_count_bos() -> None:
    # 3 content tokens + BOS = 4 columns, yet content position 3 does not exist
    batch = pad_batch([[5, 6, 7]], pad_id=2, bos_id=0)
    assert batch.input_ids.shape == (1, 4)
    with pytest.raises(ValueError, match=r"position 3 requested but a sequence has only 3 tokens"):
        absolute_positions(batch, [3])


def test_capture_position_out_of_range_raises_before_forward(tiny) -> None:
    batch = pad_batch(RAGGED, pad_id=tiny.tokenizer.pad_token_id)
    baseline = _n_hooks(tiny)  # transformers itself may keep output-recording hooks on the blocks
    with pytest.raises(ValueError, match=r"position 5 requested"):
        capture_block_states(tiny.model, tiny.blocks, batch, [0], [5])
    # a failed call leaves no hook behind
    assert _n_hooks(tiny) == baseline


# --- capture == output_hidden_states -------------------------------------------------------------------------


def test_capture_matches_output_hidden_states(tiny) -> None:
    n_layers = tiny.info.n_layers
    assert n_layers == 4
    batch = pad_batch(SAME_LENGTH, pad_id=tiny.tokenizer.pad_token_id)
    seq_len = batch.input_ids.shape[1]
    states = capture_block_states(tiny.model, tiny.blocks, batch, list(range(n_layers)), list(range(seq_len)))
    hidden = _reference_hidden_states(tiny, batch)
    assert len(hidden) == n_layers + 1
    assert sorted(states) == list(range(n_layers))
    for layer in range(n_layers):
        pre, post = states[layer]
        assert pre.shape == post.shape == (len(SAME_LENGTH), seq_len, 64)
        assert pre.dtype == post.dtype == torch.float32
        torch.testing.assert_close(pre, hidden[layer], atol=ATOL, rtol=0)
        if layer < n_layers - 1:
            torch.testing.assert_close(post, hidden[layer + 1], atol=ATOL, rtol=0)
        # a block changes the residual stream: pre and post are not the same tensor (bug B1 of the reference)
        assert (post - pre).abs().max().item() > 1e-3
    # hidden_states[-1] is after the final norm, so the last block's own output must differ from it (bug B4)
    last_post = states[n_layers - 1][1]
    assert (last_post - hidden[-1]).abs().max().item() > 1e-2


#: Each tiny family's final norm: the module between the last block and `hidden_states[-1]`.
FINAL_NORM = {"gpt2": "transformer.ln_f", "llama": "model.norm", "gemma": "model.norm", "qwen2": "model.norm",
              "gpt_neox": "gpt_neox.final_layer_norm"}


def test_last_block_output_matches_the_final_norms_input(tiny) -> None:
    """`hidden_states[-1]` is after the final norm, so the last block's output has no direct reference there.
    Two others: the final norm's input, seen by a hook on the norm itself during the reference forward, and
    the norm applied to the captured output, which must give `hidden_states[-1]` back."""
    assert set(FINAL_NORM) == set(TINY_FAMILIES)
    norm = tiny.model.get_submodule(FINAL_NORM[tiny.model.config.model_type])
    last = tiny.info.n_layers - 1
    batch = pad_batch(SAME_LENGTH, pad_id=tiny.tokenizer.pad_token_id)
    seq_len = batch.input_ids.shape[1]
    norm_inputs: list[torch.Tensor] = []
    handle = norm.register_forward_pre_hook(lambda module, args: norm_inputs.append(args[0].detach().clone()))
    try:
        hidden = _reference_hidden_states(tiny, batch)
    finally:
        handle.remove()
    assert len(norm_inputs) == 1
    post = capture_block_states(tiny.model, tiny.blocks, batch, [last], list(range(seq_len)))[last][1]
    torch.testing.assert_close(post, norm_inputs[0].float(), atol=ATOL, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(norm(post), hidden[-1], atol=ATOL, rtol=0)


def test_capture_subset_of_positions_gathers_the_right_columns(tiny) -> None:
    batch = pad_batch(SAME_LENGTH, pad_id=tiny.tokenizer.pad_token_id)
    states = capture_block_states(tiny.model, tiny.blocks, batch, [1, 2], [4, 0])
    hidden = _reference_hidden_states(tiny, batch)
    assert sorted(states) == [1, 2]
    for layer in (1, 2):
        pre, post = states[layer]
        assert pre.shape == (3, 2, 64)
        torch.testing.assert_close(pre, hidden[layer][:, [4, 0]], atol=ATOL, rtol=0)
        torch.testing.assert_close(post, hidden[layer + 1][:, [4, 0]], atol=ATOL, rtol=0)


# --- padding -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_bos", [False, True], ids=["no-bos", "bos"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_gives_same_states_as_unpadded(tiny, side: str, with_bos: bool) -> None:
    bos = tiny.tokenizer.bos_token_id if with_bos else None
    layers = list(range(tiny.info.n_layers))
    positions = [0, 1, 2]  # the shortest sequence has 3 tokens
    padded = pad_batch(RAGGED, pad_id=tiny.tokenizer.pad_token_id, padding_side=side, bos_id=bos)
    assert padded.input_ids.shape == (3, 7 + (1 if with_bos else 0))
    together = capture_block_states(tiny.model, tiny.blocks, padded, layers, positions)
    for row, seq in enumerate(RAGGED):
        alone = capture_block_states(
            tiny.model, tiny.blocks, pad_batch([seq], pad_id=tiny.tokenizer.pad_token_id, bos_id=bos), layers, positions
        )
        for layer in layers:
            for k in (0, 1):
                torch.testing.assert_close(together[layer][k][row], alone[layer][k][0], atol=ATOL, rtol=0)


def test_left_and_right_padding_agree(tiny) -> None:
    layers = list(range(tiny.info.n_layers))
    pad = tiny.tokenizer.pad_token_id
    left = capture_block_states(tiny.model, tiny.blocks, pad_batch(RAGGED, pad, "left"), layers, [0, 1, 2])
    right = capture_block_states(tiny.model, tiny.blocks, pad_batch(RAGGED, pad, "right"), layers, [0, 1, 2])
    for layer in layers:
        for k in (0, 1):
            torch.testing.assert_close(left[layer][k], right[layer][k], atol=ATOL, rtol=0)


def test_bos_prefix_content_position_zero_is_token_after_bos(tiny) -> None:
    bos = tiny.tokenizer.bos_token_id
    assert bos is not None
    seq = SAME_LENGTH[0]
    layers = list(range(tiny.info.n_layers))
    positions = list(range(len(seq)))
    with_bos = pad_batch([seq], pad_id=tiny.tokenizer.pad_token_id, bos_id=bos)
    states = capture_block_states(tiny.model, tiny.blocks, with_bos, layers, positions)
    hidden = _reference_hidden_states(tiny, with_bos)  # columns: 0 = BOS, 1.. = content
    for layer in layers[:-1]:
        torch.testing.assert_close(states[layer][0][0], hidden[layer][0, 1:], atol=ATOL, rtol=0)
        torch.testing.assert_close(states[layer][1][0], hidden[layer + 1][0, 1:], atol=ATOL, rtol=0)
    # and the BOS really is there: the state of content token 0 differs from the no-BOS run, where it is alone
    without = capture_block_states(
        tiny.model, tiny.blocks, pad_batch([seq], pad_id=tiny.tokenizer.pad_token_id), [0], [0]
    )
    assert (states[0][1][0, 0] - without[0][1][0, 0]).abs().max().item() > 1e-4


# --- early stop ----------------------------------------------------------------------------------------------


def test_only_layer_zero_returns_only_layer_zero_and_stops_early(tiny) -> None:
    baseline = _n_hooks(tiny)  # transformers itself may keep output-recording hooks on the blocks
    fired: list[int] = []
    handles = [
        block.register_forward_hook(lambda m, a, o, i=i: fired.append(i)) for i, block in enumerate(tiny.blocks)
    ]
    try:
        batch = pad_batch(SAME_LENGTH, pad_id=tiny.tokenizer.pad_token_id)
        states = capture_block_states(tiny.model, tiny.blocks, batch, [0], [0, 5])
    finally:
        for handle in handles:
            handle.remove()
    assert list(states) == [0]
    assert states[0][0].shape == (3, 2, 64)
    # block 0 ran (our hook raised after it), blocks 1..3 never ran
    assert fired == [0]
    # capture's hooks are removed even though the forward was aborted by an exception
    assert _n_hooks(tiny) == baseline
    hidden = _reference_hidden_states(tiny, batch)
    torch.testing.assert_close(states[0][1], hidden[1][:, [0, 5]], atol=ATOL, rtol=0)


def test_middle_layer_stops_after_deepest_requested(tiny) -> None:
    fired: list[int] = []
    handles = [
        block.register_forward_pre_hook(lambda m, a, i=i: fired.append(i)) for i, block in enumerate(tiny.blocks)
    ]
    try:
        batch = pad_batch(SAME_LENGTH, pad_id=tiny.tokenizer.pad_token_id)
        states = capture_block_states(tiny.model, tiny.blocks, batch, [2, 1], [0])
    finally:
        for handle in handles:
            handle.remove()
    assert sorted(states) == [1, 2]
    assert fired == [0, 1, 2]


def test_streams_equal_the_block_inputs_and_outputs_exactly(tiny) -> None:
    """Extraction stores each residual stream once (block l = streams l and l + 1): valid only if the stream a
    block receives is bit-identical to what the previous block returned, in every family."""
    n_layers = tiny.info.n_layers
    batch = pad_batch(RAGGED, pad_id=tiny.tokenizer.pad_token_id, padding_side="left")
    positions = [0, 2]
    hooks_before = _n_hooks(tiny)  # the module-scoped model may carry other tests' counting hooks
    blocks = capture_block_states(tiny.model, tiny.blocks, batch, list(range(n_layers)), positions)
    streams = capture_stream_states(tiny.model, tiny.blocks, batch, list(range(n_layers + 1)), positions)
    assert sorted(streams) == list(range(n_layers + 1))
    for layer, (pre, post) in blocks.items():
        assert torch.equal(streams[layer], pre) and torch.equal(streams[layer + 1], post)
    assert _n_hooks(tiny) == hooks_before


def test_stream_capture_stops_at_the_deepest_stream_and_rejects_missing_ones(tiny) -> None:
    batch = pad_batch(SAME_LENGTH, pad_id=tiny.tokenizer.pad_token_id)
    ran: list[int] = []
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: ran.append(i)) for i, b in enumerate(tiny.blocks)]
    try:
        out = capture_stream_states(tiny.model, tiny.blocks, batch, [2, 1], [0])
    finally:
        for h in handles:
            h.remove()
    assert sorted(out) == [1, 2] and max(ran) == 2  # block 2's pre-hook fired, block 2 itself never ran
    with pytest.raises(ValueError, match="streams \\[5\\] do not exist"):
        capture_stream_states(tiny.model, tiny.blocks, batch, [5], [0])
    assert streams_of_layers([0, 3]) == [0, 1, 3, 4] and streams_of_layers([1, 2]) == [1, 2, 3]
