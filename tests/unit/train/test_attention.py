import torch

from instructkit.data.tokenize import TokenizedExample
from instructkit.losses import response_only_loss
from instructkit.train.attention import use_varlen_attention
from instructkit.train.packing import packed_batch


def make_examples(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(3, 500, (n,), generator=g).tolist()
        labels = [-100] * (n // 2) + ids[n // 2 :]
        out.append(TokenizedExample(ids, labels))
    return out


def test_varlen_packed_equals_unpacked_loss_and_grads(tiny_model):
    examples = make_examples([7, 12, 3, 9, 15, 4])
    # unpacked reference with the stock sdpa path
    tiny_model.zero_grad()
    ref_sum, ref_n = 0.0, 0
    for e in examples:
        ids = torch.tensor([e.input_ids])
        h = tiny_model.model(input_ids=ids, use_cache=False).last_hidden_state
        s, n = response_only_loss(h, torch.tensor([e.labels]), tiny_model.lm_head)
        s.backward()
        ref_sum, ref_n = ref_sum + s.item(), ref_n + n
    ref_grads = {k: p.grad.clone() for k, p in tiny_model.named_parameters()}

    use_varlen_attention(tiny_model)
    tiny_model.zero_grad()
    b = packed_batch(examples)
    h = tiny_model.model(
        input_ids=b["input_ids"],
        position_ids=b["position_ids"],
        cu_seq_lens_q=b["cu_seqlens"],
        max_length_q=15,
        use_cache=False,
    ).last_hidden_state
    s, n = response_only_loss(h, b["labels"], tiny_model.lm_head)
    s.backward()
    assert n == ref_n
    assert abs(s.item() - ref_sum) < 1e-4 * abs(ref_sum)
    for k, p in tiny_model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[k], rtol=1e-4, atol=1e-6)


def test_without_cu_seqlens_it_falls_back_to_sdpa(tiny_model):
    ids = torch.randint(3, 500, (2, 9))
    ref = tiny_model(input_ids=ids, use_cache=False).logits
    use_varlen_attention(tiny_model)
    out = tiny_model(input_ids=ids, use_cache=False).logits
    torch.testing.assert_close(out, ref)
