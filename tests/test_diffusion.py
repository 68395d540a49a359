import math

import pytest
import torch

from hw3_utils import DDPM, Config, build_model


def scaled(x, t):
    """A stand-in noise predictor with a closed form: eps_hat = 0.5 x_t."""
    return 0.5 * x


def test_schedule_closed_forms():
    d = DDPM(1000, 1e-4, 2e-2)
    assert d.betas.shape == (1000,) and d.betas.dtype == torch.float32
    assert d.betas[0].item() == pytest.approx(1e-4) and d.betas[-1].item() == pytest.approx(2e-2)
    assert torch.allclose(d.alphas, 1 - d.betas)
    assert d.alpha_bars[0].item() == pytest.approx(1 - 1e-4, abs=1e-7)
    assert bool((d.alpha_bars[1:] < d.alpha_bars[:-1]).all())
    exact = math.prod(1 - (1e-4 + (2e-2 - 1e-4) * i / 999) for i in range(1000))
    assert d.alpha_bars[-1].item() == pytest.approx(exact, rel=1e-5)  # about 4.0e-5
    assert d.posterior_variance[0].item() == 0.0


def test_buffers_move_with_to():
    d = DDPM(10).to(torch.float64)
    assert d.betas.dtype == torch.float64 and d.alpha_bars.dtype == torch.float64


def test_q_sample_without_noise_is_scaled_x0():
    d = DDPM()
    x0 = torch.rand(4, 3, 28, 28) * 2 - 1
    t = torch.tensor([0, 10, 500, 999])
    out = d.q_sample(x0, t, torch.zeros_like(x0))
    assert torch.allclose(out, d.alpha_bars[t].sqrt().view(-1, 1, 1, 1) * x0)


def test_q_sample_variance_matches_one_minus_alpha_bar():
    d = DDPM()
    torch.manual_seed(1)
    for t in (0, 100, 500, 999):
        x = d.q_sample(torch.zeros(4000, 1, 4, 4), t)
        assert x.var().item() == pytest.approx(1 - d.alpha_bars[t].item(), rel=0.03)


@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_p_sample_matches_hand_computation(variance):
    T, b0, b1 = 10, 0.1, 0.2
    d = DDPM(T, b0, b1, variance=variance).to(torch.float64)
    x = torch.tensor([[[[0.3, -0.7]]]], dtype=torch.float64)
    z = torch.tensor([[[[1.5, -0.25]]]], dtype=torch.float64)
    t = 4  # paper timestep 5
    betas = [b0 + (b1 - b0) * i / (T - 1) for i in range(T)]
    ab = math.prod(1 - b for b in betas[: t + 1])
    ab_prev = math.prod(1 - b for b in betas[:t])
    beta = betas[t]
    var = beta if variance == "beta" else (1 - ab_prev) / (1 - ab) * beta
    for xi, zi, got in zip((0.3, -0.7), (1.5, -0.25), d.p_sample(scaled, x, t, noise=z).flatten().tolist()):
        mean = (xi - beta / math.sqrt(1 - ab) * 0.5 * xi) / math.sqrt(1 - beta)
        assert got == pytest.approx(mean + math.sqrt(var) * zi, rel=1e-6)


def test_no_noise_added_at_t0():
    d = DDPM()
    x = torch.randn(2, 3, 28, 28)
    a = d.p_sample(scaled, x, 0, generator=torch.Generator().manual_seed(1))
    b = d.p_sample(scaled, x, 0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    c = d.p_sample(scaled, x, 1, generator=torch.Generator().manual_seed(1))
    e = d.p_sample(scaled, x, 1, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(c, e)


def test_loss_decreases_when_overfitting_one_batch():
    torch.manual_seed(0)
    model = build_model(Config(model_channels=8))
    d = DDPM()
    x0 = torch.rand(8, 3, 28, 28) * 2 - 1
    t = torch.randint(0, 1000, (8,))
    noise = torch.randn_like(x0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for _ in range(60):
        loss = d.loss(model, x0, t=t, noise=noise)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_weighted_loss_equals_mse_on_real_rows():
    model = build_model(Config(model_channels=8))
    d = DDPM()
    x0, t, n = torch.rand(5, 3, 28, 28), torch.randint(0, 1000, (5,)), torch.randn(5, 3, 28, 28)
    plain = d.loss(model, x0[:3], t=t[:3], noise=n[:3])
    w = torch.tensor([1 / 3] * 3 + [0.0, 0.0])
    padded = d.loss(model, x0, t=t, noise=n, weights=w)
    assert padded.item() == pytest.approx(plain.item(), rel=1e-6)


def test_predict_eps_and_predict_x0_invert_q_sample():
    d = DDPM()
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.rand(6, 1, 28, 28, generator=g) * 2 - 1, torch.randn(6, 1, 28, 28, generator=g)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    x_t = d.q_sample(x0, t, eps)
    # each divides by a sqrt of the schedule: 1/sqrt(1 - alpha-bar_1) = 100 and 1/sqrt(alpha-bar_T) = 157 magnify
    # the float32 rounding of x_t, hence the tolerance
    assert torch.allclose(d.predict_eps(x_t, t, x0), eps, atol=1e-3)
    assert torch.allclose(d.predict_x0(x_t, t, eps), x0, atol=1e-3)


@pytest.mark.parametrize("channels", [1, 3])
def test_mean_error_closed_forms(channels):
    # a model that predicts zero noise misses the whole image mean of eps, N(0, 1/(C*784)) per image, so an
    # RMS of 1/sqrt(C*784) (1,024 images: the estimate's relative spread is about 1/sqrt(2048) = 2%); one that
    # returns x_t misses only sqrt(alpha-bar_T) times x0's mean (x0 uniform: an RMS 0.0064 x 0.021 = 1e-4);
    # one that predicts eps exactly misses nothing
    d = DDPM()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(1024, channels, 28, 28, generator=g) * 2 - 1
    ignores = 1 / math.sqrt(channels * 784)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    assert abs(d.mean_error(zero, x0, generator=g) - ignores) < 0.1 * ignores
    assert d.mean_error(lambda x, t: x, x0, generator=g) < 0.01 * ignores

    def exact(x, t):  # eq. 4 solved for eps, with the x0 that x_t was made from
        return d.predict_eps(x, t, x0)

    assert d.mean_error(exact, x0, generator=g) < 1e-5
    # at t = 0 the identity is far off: eps-hat = x_t carries x0's mean, and eps's is missed
    assert d.mean_error(lambda x, t: x, x0, t=0, generator=g) > 0.5 * ignores
