"""Flow-matching head: starts at zero velocity, learns a conditional distribution, samples."""

import pytest
import torch

from flowomni.config import ConfigError, SettingError, from_dict
from flowomni.inference.decoder import GenerationConfig
from flowomni.model.config import ModelConfig
from flowomni.model.flow_head import FlowHead, FlowHeadConfig


def head(refiner_layers: int = 1, **kw) -> FlowHead:
    torch.manual_seed(0)
    cfg = FlowHeadConfig(width=64, depth=2, refiner_layers=refiner_layers, refiner_heads=2, **kw)
    return FlowHead(cfg, cond_dim=8, frame_dim=4, group=2)


def test_zero_initialised_velocity():
    h = head()
    v = h.net(torch.randn(3, 8), torch.rand(3), torch.randn(3, 64))
    assert torch.all(v == 0)


@pytest.mark.parametrize("refiner_layers", [0, 1])
def test_learns_condition_dependent_targets(refiner_layers):
    """Two conditions -> two different frame groups; sampling must land near each."""
    torch.manual_seed(0)
    fh = head(refiner_layers, p_uncond=0.1)
    conds = torch.randn(2, 8)
    targets = torch.tensor([[[2.0, -1, 0, 1], [1, 1, 1, 1]], [[-2.0, 1, 0, -1], [0, 0, -1, 2]]])
    opt = torch.optim.Adam(fh.parameters(), lr=3e-3)
    first = None
    for _ in range(400):
        idx = torch.randint(0, 2, (64,))
        loss = fh.loss(conds[idx], targets[idx] + 0.05 * torch.randn(64, 2, 4)).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.25 * first
    fh.eval()
    for method in ("euler", "midpoint"):
        g = torch.Generator().manual_seed(1)
        x = fh.sample(conds.repeat_interleave(16, 0), steps=16, method=method, generator=g)
        mean = x.view(2, 16, 2, 4).mean(1)
        assert (mean - targets).abs().max() < 0.5, (method, mean)
    # guidance pushes samples toward the conditional mode, still near the target
    x = fh.sample(conds, steps=8, cfg_scale=2.0, generator=torch.Generator().manual_seed(2))
    assert (x - targets).abs().mean() < 0.6


def test_sampling_is_deterministic_given_generator_and_temperature_zero_is_noise_free():
    fh = head().eval()
    c = torch.randn(3, 8)
    a = fh.sample(c, generator=torch.Generator().manual_seed(5))
    b = fh.sample(c, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (3, 2, 4)
    z1 = fh.sample(c, temperature=0.0, generator=torch.Generator().manual_seed(1))
    z2 = fh.sample(c, temperature=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(z1, z2)


def test_unknown_sampler_is_a_clear_error():
    with pytest.raises(SettingError, match="unknown flow sampler"):
        head().sample(torch.randn(1, 8), method="rk45")
    with pytest.raises(SettingError, match="no one-step flow student"):
        head().sample(torch.randn(1, 8), method="student")


def test_sampler_names_are_checked_when_the_config_is_read():
    """A bad name fails where the config is read, naming the key; it used to fail at the first
    answer (flow sampler) or never (t_sampling: anything but logit_normal trained uniformly)."""
    for key, bad in (("t_sampling", "logitnormal"), ("method", "rk45"), ("prior", "gaussian")):
        with pytest.raises(ConfigError, match=f"model.flow.{key}: '{bad}' is not one of"):
            from_dict(ModelConfig, {"flow": {key: bad}})
    with pytest.raises(ConfigError, match="flow_method: 'eulr' is not one of"):
        from_dict(GenerationConfig, {"flow_method": "eulr"})
    with pytest.raises(ConfigError, match="decode_dtype: 'int8' is not one of"):
        GenerationConfig(decode_dtype="int8")
    with pytest.raises(ConfigError, match="model.speech_head: 'codes' is not one of"):
        from_dict(ModelConfig, {"speech_head": "codes"})


def test_uniform_t_sampling_is_uniform_and_logit_normal_is_not():
    early = {}
    for name in ("uniform", "logit_normal"):
        t = head(t_sampling=name)._sample_t(20000, torch.device("cpu"), torch.Generator().manual_seed(0))
        early[name] = float((t < 0.1).float().mean())
    assert abs(early["uniform"] - 0.1) < 0.01  # P(t < 0.1) = 0.1
    assert abs(early["logit_normal"] - 0.014) < 0.005  # P(sigmoid(z) < 0.1) = P(z < -2.2)


def test_cached_time_embeddings_follow_weight_updates():
    """Sampling reuses the time embeddings between calls; an optimizer step or a load must
    not leave it sampling with the old ones."""
    fh = head(0).eval()
    for p in fh.parameters():  # non-zero output layers, so the time MLP matters
        torch.nn.init.normal_(p, std=0.3)
    h = torch.randn(2, 8)
    fh.sample(h, steps=2, method="euler", generator=torch.Generator().manual_seed(0))  # fills the cache
    opt = torch.optim.SGD(fh.net.time.parameters(), lr=1.0)
    fh.net.time(torch.randn(1, 64)).sum().backward()
    opt.step()
    got = fh.sample(h, steps=2, method="euler", generator=torch.Generator().manual_seed(0))
    fresh = head(0).eval()
    fresh.load_state_dict(fh.state_dict())
    want = fresh.sample(h, steps=2, method="euler", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(got, want)
    fh.load_state_dict(head(0).state_dict())  # a load replaces the weights in place

    def euler2(fh: FlowHead) -> torch.Tensor:
        return fh.sample(h, steps=2, method="euler", generator=torch.Generator().manual_seed(0))

    torch.testing.assert_close(euler2(fh), euler2(head(0).eval()))


def test_mean_prior_learns_the_mean_and_starts_the_ode_there():
    """`prior: mean`: the regression reaches the conditional mean, temperature-0 samples start
    on it, and sampling still lands on each condition's target."""
    torch.manual_seed(0)
    fh = head(0, prior="mean")
    conds = torch.randn(2, 8)
    targets = torch.tensor([[[2.0, -1, 0, 1], [1, 1, 1, 1]], [[-2.0, 1, 0, -1], [0, 0, -1, 2]]])
    opt = torch.optim.Adam(fh.parameters(), lr=3e-3)
    for _ in range(300):
        idx = torch.randint(0, 2, (64,))
        loss = fh.loss(conds[idx], targets[idx] + 0.05 * torch.randn(64, 2, 4)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    fh.eval()
    mu = fh.prior(conds).view(2, 2, 4)
    assert (mu - targets).abs().max() < 0.2, mu
    x = fh.sample(conds, steps=4, method="euler", temperature=0.0)
    assert (x - targets).abs().max() < 0.3, x
    # no steps' worth of velocity: a zero velocity net leaves the sample on the mean
    torch.nn.init.zeros_(fh.net.out.weight)
    torch.nn.init.zeros_(fh.net.out.bias)
    torch.testing.assert_close(fh.sample(conds, steps=2, temperature=0.0), mu)


def test_mean_prior_ignores_condition_dropout():
    """The prior regresses from the undropped condition: dropping every condition (p_uncond=1)
    must still teach it each condition's own mean."""
    torch.manual_seed(0)
    fh = head(0, prior="mean", p_uncond=1.0)
    conds = torch.randn(2, 8)
    targets = torch.stack([torch.full((2, 4), 1.5), torch.full((2, 4), -1.5)])
    opt = torch.optim.Adam(fh.prior.parameters(), lr=1e-2)
    for _ in range(200):
        loss = fh.loss(conds, targets).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (fh.prior(conds).view(2, 2, 4) - targets).abs().max() < 0.2


def test_unknown_prior_is_a_clear_error():
    with pytest.raises(ConfigError, match="model.flow.prior"):
        head(prior="gaussian")
