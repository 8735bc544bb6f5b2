"""The variance measurement's gradient probe (remax_ray/repro/variance_probe.py) on the tiny random
Llama: the trailing-block path gives the whole model's log-probs and per-sample gradients, for rows of
a right-padded batch of different lengths, and its markdown report renders."""

from __future__ import annotations

import pytest
import torch

from remax_ray.repro.variance_probe import GradientProbe, parse_params
from remax_ray.repro.variance_sketch import CountSketch

TEMPERATURE = 0.7


def _groups(probe: GradientProbe):
    """Two prompts of different lengths, each with responses of different lengths (one with an EOS
    mid-response, whose later tokens are not the policy's)."""
    g = torch.Generator().manual_seed(0)
    out = []
    for p_len in (3, 6):
        prompt = torch.randint(1, 300, (p_len,), generator=g).tolist()
        responses = [torch.randint(1, 300, (2 + 3 * i,), generator=g).tolist() for i in range(4)]
        responses[3][2] = probe.eos_ids[0]
        out.append((prompt, responses))
    return out


def _exact(probe: GradientProbe, seq) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """log pi(y | x) and its gradient from one plain forward of the whole model."""
    ids = torch.tensor([seq.ids])
    logits = probe.model(input_ids=ids, use_cache=False).logits[0].float() / TEMPERATURE
    logp = torch.log_softmax(logits[seq.cols], -1).gather(-1, seq.targets.unsqueeze(-1)).sum()
    return logp.detach(), list(torch.autograd.grad(logp, probe.tensors))


# +head with the untied model: a tied head's matrix is also the input embedding, whose share of the
# gradient sits below the cut (documented; the test below checks that only the head's share is there).
@pytest.mark.parametrize(("spec", "model"), [("last:1", "tiny_model"), ("last:2+head", "tiny_model_untied"),
                                             ("all", "tiny_model")])
def test_per_sample_gradients_are_the_whole_models(request, spec, model, monkeypatch):
    import remax_ray.repro.variance_probe as vp

    monkeypatch.setattr(vp, "HEAD_ROWS", 12)  # several head passes per prompt
    probe = GradientProbe(str(request.getfixturevalue(model)), parse_params(spec), temperature=TEMPERATURE)
    sketch = CountSketch([p.numel() for p in probe.tensors], k=64, seed=0)
    for prompt, responses in _groups(probe):
        seqs = probe.sequences(prompt, responses)
        assert len(seqs[3].cols) == 3  # up to and including the EOS
        assert [len(s.cols) for s in seqs[:3]] == [len(r) for r in responses[:3]]
        rows, norms, logps = probe.sketches(prompt, responses, sketch)
        for i, seq in enumerate(seqs):
            logp, grads = _exact(probe, seq)
            assert float(logps[i]) == pytest.approx(float(logp), abs=1e-4)
            flat = torch.cat([x.reshape(-1) for x in grads])
            assert float(norms[i]) == pytest.approx(float(flat.double().pow(2).sum()), rel=1e-4)
            # Each bucket sums many coordinates in float32: compare as vectors.
            assert float((rows[i] - sketch.flat(flat)).norm()) <= 1e-4 * float(rows[i].norm())
        assert probe.check(prompt, responses) < 1e-4


def test_a_tied_head_gets_only_the_heads_share(tiny_model):
    """last:2 covers every block of the tiny model, so with the head the probe misses exactly the
    tied matrix's gradient through the input embedding: the rows of the sequence's input tokens."""
    probe = GradientProbe(str(tiny_model), parse_params("last:2+head"), temperature=TEMPERATURE)
    prompt, responses = _groups(probe)[1]
    seq = probe.sequences(prompt, responses)[2]
    _, ours = next(iter(probe.gradients(prompt, responses[2:3])))
    _, exact = _exact(probe, seq)
    tied = next(i for i, p in enumerate(probe.tensors) if p is probe.head.weight)
    for i, (a, b) in enumerate(zip(ours, exact)):
        if i != tied:
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    inputs = sorted(set(seq.ids))
    others = [t for t in range(probe.head.weight.shape[0]) if t not in inputs]
    assert torch.allclose(ours[tied][others], exact[tied][others], rtol=1e-4, atol=1e-6)
    assert not torch.allclose(ours[tied][inputs], exact[tied][inputs], rtol=1e-4, atol=1e-6)


def test_the_measured_parameters_are_named_and_counted(tiny_model):
    last = GradientProbe(str(tiny_model), parse_params("last:1"))
    assert last.tied  # the tiny model ties its head, like SmolLM2
    assert all(n.startswith("model.layers.1.") or n == "model.norm.weight" for n in last.names)
    assert "model.norm.weight" in last.names
    head = GradientProbe(str(tiny_model), parse_params("last:1+head"))
    assert head.count == last.count + head.head.weight.numel()
    every = GradientProbe(str(tiny_model), parse_params("all"))
    assert every.count == sum(p.numel() for p in every.model.parameters())  # the tied matrix once


@pytest.mark.parametrize("bad", ["last", "last:0", "last:2+tail", "first:1", ""])
def test_bad_parameter_sets_are_refused(bad):
    with pytest.raises(ValueError, match="params must be"):
        parse_params(bad)


def test_more_blocks_than_the_model_has_are_refused(tiny_model):
    with pytest.raises(ValueError, match="only 2 decoder blocks"):
        GradientProbe(str(tiny_model), parse_params("last:3"))
