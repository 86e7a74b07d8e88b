import torch

from instructkit.data.batching import length_grouped_batches, pad_batch
from instructkit.data.tokenize import IGNORE_INDEX, TokenizedExample


def test_length_grouped_batches_cover_each_index_once():
    lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 10, 11]
    batches = length_grouped_batches(lengths, 3, seed=1)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    assert all(len(b) <= 3 for b in batches)
    assert batches == length_grouped_batches(lengths, 3, seed=1)
    # within a window, batches are sorted by length
    for b in batches:
        assert [lengths[i] for i in b] == sorted(lengths[i] for i in b)


def test_pad_batch_right_pads_and_masks():
    a = TokenizedExample([1, 2, 3], [IGNORE_INDEX, 2, 3])
    b = TokenizedExample([4], [4])
    batch = pad_batch([a, b], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["input_ids"].dtype == torch.long
