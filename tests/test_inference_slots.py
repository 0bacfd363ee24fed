"""Static decode steps in slots: the same answers as decoder.Decoder for the same seed, whether
an answer decodes alone or beside others that join and leave, and the slot bookkeeping."""

from __future__ import annotations

import pytest
import torch
from test_inference_engine import speaking_model
from test_model_flowomni import tiny_config

from flowomni.inference.decoder import Decoder, GenerationConfig, Prompt
from flowomni.inference.slots import SlotDecoder
from flowomni.inference.static_step import unsupported
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import Task
from flowomni.model.tokenizer import CharTokenizer

# sampled text, unguided: Decoder draws a batch's text noise from one generator, so an answer
# beside its companion (guide.py) draws other noise than in a slot (test_inference_guide.py)
SAMPLED = GenerationConfig(
    max_steps=30, seed=1, text_temperature=0.8, top_k=20, top_p=0.9, flow_temperature=0.7, guided_text=False
)
GENS = {
    "greedy": GenerationConfig(max_steps=30, seed=0),
    "sampled": SAMPLED,
    "euler_cfg_fp32": GenerationConfig(
        max_steps=30,
        seed=2,
        flow_method="euler",
        flow_steps=3,
        flow_temperature=1.0,
        cfg_scale=1.5,
        decode_dtype="float32",
    ),
}


def varied_model(seed: int) -> FlowOmni:
    """A random model whose speech states depend on the hidden state: depending on the seed it
    never starts speaking, starts and stops at once, speaks one group, or speaks on while its
    text ends early (seeds 5, 0, 6, 4): every branch of the state grammar and of the noise."""
    torch.manual_seed(seed)
    model = FlowOmni(tiny_config(), CharTokenizer()).eval()
    with torch.no_grad():
        model.state_head.weight.normal_(0, 3.0)
        model.state_head.bias.copy_(torch.tensor([1.0, 0.0, 2.5, 0.0]))
    return model


def legacy(model: FlowOmni, prompt: Prompt, gen: GenerationConfig) -> tuple[list[int], torch.Tensor | None]:
    dec = Decoder(model, [prompt], gen)
    toks, groups = [], []
    while not dec.done:
        (out,) = dec.step()
        if out.token is not None:
            toks.append(out.token)
        if out.group is not None:
            groups.append(out.group)
    return toks, torch.cat(groups) if groups else None


def static(
    dec: SlotDecoder, prompts: list[Prompt], join_at: list[int] | None = None
) -> list[tuple[list[int], torch.Tensor | None]]:
    """Decode `prompts` in `dec`, prompt i joining before step join_at[i]; leave when done."""
    join_at = join_at or [0] * len(prompts)
    results: dict[int, tuple[list[int], list[torch.Tensor]]] = {}
    answers: dict[int, object] = {}
    step = 0
    while len(answers) < len(prompts) or dec.active:
        new = [i for i, at in enumerate(join_at) if at == step]
        for i, ans in zip(new, dec.join([prompts[i] for i in new])):
            answers[i], results[ans.id] = ans, ([], [])
        for answer_id, out in dec.step().items():
            if out.token is not None:
                results[answer_id][0].append(out.token)
            if out.group is not None:
                results[answer_id][1].append(out.group)
        for ans in answers.values():
            if ans.done:
                dec.leave(ans)
        step += 1
    out = []
    for i in range(len(prompts)):
        toks, groups = results[answers[i].id]
        out.append((toks, torch.cat(groups) if groups else None))
    return out


def assert_same(
    got: tuple[list[int], torch.Tensor | None], want: tuple[list[int], torch.Tensor | None], fp16: bool = False
) -> None:
    """The same text and lengths, and the same mel: to float32 rounding, or (`fp16`: decoded in
    half precision, the CPU default for a streamed answer) to a few units in fp16's last place,
    about 0.008 at |x| in [8, 16): fp16 kernels with AMX / AVX512-FP16 may round a 1-row and a
    2-row product differently, and fed-back mel carries that on."""
    assert got[0] == want[0]
    assert (got[1] is None) == (want[1] is None)
    if want[1] is not None:
        atol, rtol = (2**-6, 2**-8) if fp16 else (1e-5, 1e-4)
        torch.testing.assert_close(got[1], want[1], atol=atol, rtol=rtol)


@pytest.fixture(scope="module")
def model() -> FlowOmni:
    return speaking_model()


@pytest.fixture(scope="module")
def question() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(150, 80)


@pytest.mark.parametrize("name", GENS)
def test_one_slot_equals_the_decoder(model: FlowOmni, question: torch.Tensor, name: str) -> None:
    gen = GENS[name]
    for prompt in (
        Prompt(Task.T2S, text="Hi there?"),
        Prompt(Task.S2S, audio_mel=question),
        Prompt(Task.T2T, text="What?", history=[("Hello?", "Hi.")]),
    ):
        (got,) = static(SlotDecoder(model, gen, 1), [prompt])
        assert_same(got, legacy(model, prompt, gen))


@pytest.mark.parametrize("seed", [5, 0, 6, 4])
def test_every_state_path_equals_the_decoder(seed: int) -> None:
    """Flow noise is drawn before the state is known; steps without a group give it back."""
    m = varied_model(seed)
    prompt = Prompt(Task.T2S, text="Hi there?")
    want = legacy(m, prompt, SAMPLED)
    assert_same(static(SlotDecoder(m, SAMPLED, 1), [prompt])[0], want)
    # and the same beside another answer that joins later and leaves earlier
    other = Prompt(Task.T2S, text="Something else entirely?")
    got = static(SlotDecoder(m, SAMPLED, 2), [prompt, other], join_at=[0, 3])
    assert_same(got[0], want)
    assert_same(got[1], legacy(m, other, SAMPLED))


def test_answers_joining_and_leaving_are_each_their_own(model: FlowOmni, question: torch.Tensor) -> None:
    """Five answers through three slots, joining at different steps and leaving when done
    (different step budgets): each equals its answer decoded alone with its own seed."""
    prompts = [
        Prompt(Task.T2S, text="Hi?"),
        Prompt(Task.S2S, audio_mel=question),
        Prompt(Task.T2T, text="What?"),
        Prompt(Task.S2S, audio_mel=question[:90]),
        Prompt(Task.T2S, text="One more question?"),
    ]
    dec = SlotDecoder(model, SAMPLED, 3)
    steps = [30, 12, 20, 25, 8]
    join_at = [0, 0, 2, 13, 23]  # the 4th joins the slot the 2nd left, the 5th the 3rd's
    results: dict[int, tuple[list[int], list[torch.Tensor]]] = {}
    answers: dict[int, object] = {}
    for step in range(60):
        new = [i for i, at in enumerate(join_at) if at == step]
        if new:
            for i, ans in zip(
                new, dec.join([prompts[i] for i in new], [SAMPLED.seed + i for i in new], [steps[i] for i in new])
            ):
                answers[i], results[ans.id] = ans, ([], [])
        for answer_id, out in dec.step().items():
            results[answer_id][0].append(out.token)
            results[answer_id][1].append(out.group)
        for ans in answers.values():
            if ans.done:
                dec.leave(ans)
    assert dec.free == 3 and len(answers) == 5
    for i, prompt in enumerate(prompts):
        toks, groups = results[answers[i].id]
        assert len(toks) == steps[i]
        mel = [g for g in groups if g is not None]
        gen = GenerationConfig(**{**SAMPLED.__dict__, "seed": SAMPLED.seed + i, "max_steps": steps[i]})
        assert_same(([t for t in toks if t is not None], torch.cat(mel) if mel else None), legacy(model, prompt, gen))


def test_slots_free_within_a_step_and_refuse_overfilling(model: FlowOmni) -> None:
    dec = SlotDecoder(model, GENS["greedy"], 2)
    a, b = dec.join([Prompt(Task.T2S, text="Hi?"), Prompt(Task.T2S, text="Yo?")])
    assert dec.free == 0
    with pytest.raises(RuntimeError, match="free slots"):
        dec.join([Prompt(Task.T2S, text="Full?")])
    dec.step()
    dec.leave(a)  # barge-in: the next step no longer computes for it
    assert dec.free == 1 and a.done and set(dec.step()) == {b.id}
    (c,) = dec.join([Prompt(Task.T2S, text="Again?")])
    assert set(dec.step()) == {b.id, c.id}


def test_context_limit_is_a_clear_error(model: FlowOmni) -> None:
    dec = SlotDecoder(model, GENS["greedy"], 1, max_len=32)
    with pytest.raises(ValueError, match="max_len"):
        dec.join([Prompt(Task.T2T, text="x" * 40)])
    (ans,) = dec.join([Prompt(Task.T2T, text="Hi?")])  # the answer is cut where the cache ends
    n = dec.lengths[ans.slot]
    while not ans.done:
        dec.step()
    assert 32 - n < 30 and ans.steps == 32 - n


def test_shipped_model_answers_as_the_decoder_does(question: torch.Tensor) -> None:
    """A trained model ends its text and its speech by itself; greedy, as it ships."""
    m = FlowOmni.load()
    gen = GenerationConfig(max_steps=120, seed=0)
    for prompt in (Prompt(Task.T2S, text="What is two plus three?"), Prompt(Task.S2S, audio_mel=question)):
        got, want = static(SlotDecoder(m, gen, 1), [prompt])[0], legacy(m, prompt, gen)
        assert want[0] and want[1] is not None and len(want[1]) < 4 * 120  # it stopped on its own
        assert_same(got, want, fp16=True)


def test_unsupported_models_are_named() -> None:
    cfg = tiny_config()
    cfg.speech_head = "discrete"
    cfg.codec.n_q, cfg.codec.codebook_size = 2, 16
    m = FlowOmni(cfg, CharTokenizer())
    assert "discrete" in unsupported(m)
    with pytest.raises(ValueError, match="discrete"):
        SlotDecoder(m, GENS["greedy"], 1)


def test_outputs_read_one_step_late_are_the_same_answers(model: FlowOmni) -> None:
    """Lag mode (a GPU's: the host reads step t while step t+1 runs), here on the CPU: without
    noise the answers are exactly the synchronous ones; with noise they depend on the seed only."""
    prompts = [Prompt(Task.T2S, text="Hi there?"), Prompt(Task.T2S, text="And you?")]
    greedy = GenerationConfig(max_steps=30, seed=0, flow_temperature=0.0)
    late, now = (static(SlotDecoder(model, greedy, 2, lag=lag), prompts, join_at=[0, 2]) for lag in (True, False))
    for a, b in zip(late, now):
        assert_same(a, b)
    runs = [static(SlotDecoder(model, SAMPLED, 2, lag=True), prompts, join_at=[0, 2]) for _ in range(2)]
    for a, b in zip(*runs):
        assert_same(a, b)


@pytest.mark.slow
def test_compiled_step_equals_the_eager_one(model: FlowOmni) -> None:
    """torch.compile traces the whole step as one graph (no breaks) and computes the same."""
    prompt = Prompt(Task.T2S, text="Hi there?")
    gen = GenerationConfig(max_steps=6, seed=0, decode_dtype="float32")
    eager = static(SlotDecoder(model, gen, 2, max_len=64), [prompt])[0]
    dec = SlotDecoder(model, gen, 2, max_len=64, compile=True)
    s = dec.state
    explained = torch._dynamo.explain(dec.graph)(
        s.h, s.pos, s.text_done, s.started, s.speech_done, dec.text_noise, dec.flow_noise, 64, True
    )
    assert explained.graph_break_count == 0
    assert_same(static(dec, [prompt])[0], eager)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_step_matches_the_cpu_decoder() -> None:
    """On a GPU: compiled with CUDA graphs, outputs read one step late; greedy text as on CPU."""
    m = speaking_model()
    gen = GenerationConfig(max_steps=20, seed=0, decode_dtype="float32")
    prompt = Prompt(Task.T2S, text="Hi there?")
    want = legacy(m, prompt, gen)
    dec = SlotDecoder(m.to("cuda"), gen, 4)
    assert dec.compiled and dec.lag
    got = static(dec, [prompt, Prompt(Task.T2S, text="Another?")])[0]
    assert got[0] == want[0]
    torch.testing.assert_close(got[1].cpu(), want[1], atol=1e-3, rtol=1e-3)
