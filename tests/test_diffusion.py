import math

import pytest
import torch

from hw3_utils import DDPM, Config, build_model
from hw3_utils.diffusion import cosine_betas


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


def test_same_generator_gives_same_samples():
    model = build_model(Config(model_channels=8)).eval()
    d = DDPM(50)
    model.timesteps = 50
    a = d.sample(model, 3, generator=torch.Generator().manual_seed(7), progress=False)
    b = d.sample(model, 3, generator=torch.Generator().manual_seed(7), progress=False)
    c = d.sample(model, 3, generator=torch.Generator().manual_seed(8), progress=False)
    assert a.shape == (3, 3, 28, 28) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1


def test_batched_sampling_equals_sequence_of_batches():
    model = build_model(Config(model_channels=8)).eval()
    d = DDPM(20)
    model.timesteps = 20
    whole = d.sample(model, 4, generator=torch.Generator().manual_seed(3), progress=False, batch_size=2)
    g = torch.Generator().manual_seed(3)
    parts = torch.cat([d.sample(model, 2, generator=g, progress=False) for _ in range(2)])
    assert torch.equal(whole, parts)


def test_snapshots_span_noise_to_image():
    model = build_model(Config(model_channels=8)).eval()
    d = DDPM(1000)
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn((2, 3, 28, 28), generator=torch.Generator().manual_seed(0))
    images, frames, labels = d.sample(model, 2, generator=g, snapshots=8, progress=False)
    assert frames.shape == (8, 2, 3, 28, 28)
    assert labels[0] == 1000 and labels[-1] == 0 and labels == sorted(labels, reverse=True)
    assert torch.equal(frames[-1], images)
    assert torch.equal(frames[0], x_T.clamp(-1, 1))


def test_ddim_eta0_is_deterministic_and_eta1_is_not():
    model = build_model(Config(model_channels=8)).eval()
    d = DDPM()
    x_T = torch.Generator().manual_seed(0)
    a = d.ddim_sample(model, 2, steps=10, generator=x_T, progress=False)
    b = d.ddim_sample(model, 2, steps=10, generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.equal(a, b)
    # with eta=0 the noise after x_T is never used: a different stream after x_T changes nothing
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    c = d.ddim_sample(model, 2, steps=10, eta=1.0, generator=g1, progress=False)
    torch.randn(5, generator=g2)
    assert not torch.equal(a, c)


def test_ddim_full_steps_eta1_variance_equals_ddpm_beta_tilde():
    # DDIM eq. 16: eta=1 with all T steps gives sigma_t^2 = beta-tilde_t, DDPM's posterior variance
    d = DDPM(100)
    t, tp = 50, 49
    ab, ab_prev = d.alpha_bars[t], d.alpha_bars[tp]
    sigma2 = (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)
    assert sigma2.item() == pytest.approx(d.posterior_variance[t].item(), rel=1e-5)


def test_ddim_rejects_bad_step_count():
    with pytest.raises(ValueError, match=r"steps must be in \[1, 1000\]"):
        DDPM().ddim_sample(scaled, 1, steps=0, progress=False)


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


def test_sampler_respects_bf16_off_the_graph_path():
    from hw3_utils import make_sampler

    cfg = Config(model_channels=8, timesteps=5)
    model = build_model(cfg).eval()
    plain = make_sampler(model, cfg, method="ddim", steps=5, progress=False)
    bf16 = make_sampler(model, Config(model_channels=8, timesteps=5, amp_bf16=True), method="ddim",
                        steps=5, progress=False)
    a = plain(2, torch.Generator().manual_seed(0))
    b = bf16(2, torch.Generator().manual_seed(0))
    assert a.shape == b.shape == (2, 3, 28, 28)
    assert not torch.equal(a, b) and (a - b).abs().max() < 0.5  # bf16 rounding, same trajectory


# sampler options: respacing and x0-hat clipping ----------------------------------------------------
def _stub(x, t):
    return 0.3 * x + 1e-3 * t.float().view(-1, 1, 1, 1)


def test_respaced_schedule_keeps_alpha_bar_at_its_timesteps():
    d = DDPM()
    r, net = d.respaced(_stub, 100)
    tau = list(range(0, 1000, 10))
    assert r.timesteps == 100 and r.paper_t == [t + 1 for t in tau]
    assert torch.allclose(r.alpha_bars.double(), d.alpha_bars.double()[tau], rtol=1e-6)
    # beta'_1 = beta_1 (tau starts at index 0), then beta'_i = 1 - alpha-bar_tau_i / alpha-bar_tau_(i-1)
    ab = d.alpha_bars.double()[tau]
    assert torch.allclose(r.betas[0], d.betas[0], rtol=1e-5)
    assert torch.allclose(r.betas[1:].double(), 1 - ab[1:] / ab[:-1], rtol=1e-5)
    x, i = torch.randn(2, 1, 4, 4), torch.tensor([3, 99])
    assert torch.equal(net(x, i), _stub(x, torch.tensor([30, 990])))  # asked at the original timesteps
    full, _ = d.respaced(_stub, 1000)
    assert torch.allclose(full.betas.double(), d.betas.double(), rtol=1e-9)


def test_ancestral_sampling_on_a_respaced_schedule_equals_ddim_with_eta_1():
    # DDIM eq. 16 with eta = 1 is DDPM's posterior on the subsequence: the same noise gives the same images
    d = DDPM()
    for clip in (False, True):
        a = d.sample(_stub, 3, (1, 8, 8), generator=torch.Generator().manual_seed(1), progress=False, steps=50,
                     clip_denoised=clip)
        b = d.ddim_sample(_stub, 3, steps=50, eta=1.0, shape=(1, 8, 8), generator=torch.Generator().manual_seed(1),
                          progress=False, clip_denoised=clip)
        assert torch.allclose(a, b, atol=1e-4), clip
    _, _, labels = d.sample(_stub, 2, (1, 8, 8), progress=False, steps=100, snapshots=5)
    assert labels == [991, 741, 491, 241, 0]


def test_clipped_model_implies_a_clipped_x0_and_the_posterior_mean_of_eq_7():
    d = DDPM()
    x = 3 * torch.randn(4, 1, 8, 8)
    t = torch.tensor([0, 10, 500, 999])
    big = lambda x, t: -5 * x  # noqa: E731  (an x0-hat far outside [-1, 1])
    eps_c = d.clipped(big)(x, t)
    x0 = d.predict_x0(x, t, eps_c)
    assert torch.allclose(x0, d.predict_x0(x, t, big(x, t)).clamp(-1, 1), atol=1e-4)
    # eq. 11's mean with eps' = eq. 7's posterior mean at the clipped x0-hat (what Ho et al.'s code computes)
    ab, ab_prev = d.alpha_bars[t].view(-1, 1, 1, 1).double(), d.alpha_bars_prev[t].view(-1, 1, 1, 1).double()
    beta, alpha = d.betas[t].view(-1, 1, 1, 1).double(), d.alphas[t].view(-1, 1, 1, 1).double()
    mean7 = (ab_prev.sqrt() * beta / (1 - ab)) * x0.double() + (alpha.sqrt() * (1 - ab_prev) / (1 - ab)) * x.double()
    z = torch.zeros_like(x)
    assert torch.allclose(d.p_sample(d.clipped(big), x, t, noise=z).double(), mean7, atol=1e-3, rtol=1e-3)
    out = d.sample(big, 2, (1, 8, 8), progress=False, steps=20, clip_denoised=True)
    assert out.abs().max() <= 1


def test_cosine_betas_give_nichol_dhariwal_alpha_bars():
    # eq. 17 of Nichol & Dhariwal: alpha-bar_t = f(t)/f(0), f(t) = cos^2((t/T + s)/(1 + s) pi/2)
    T, s = 1000, 0.008
    d = DDPM(betas=cosine_betas(T, s), dtype=torch.float64)
    t = torch.arange(1, T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    unclipped = d.betas < 0.999  # only the very last steps hit the clip
    assert unclipped[: T - 5].all() and not unclipped.all()
    torch.testing.assert_close(d.alpha_bars[unclipped], f[unclipped], rtol=1e-9, atol=1e-12)
    assert d.timesteps == T and float(d.betas.max()) == pytest.approx(0.999)


def test_min_snr_weights_turn_eps_loss_into_clamped_x0_loss():
    # Hang et al.: weight min(SNR, gamma) on the x0 error == weight min(SNR, gamma)/SNR on the eps error,
    # because x0-hat - x0 = -(eps-hat - eps) / sqrt(SNR_t) (eq. 4 solved for x0)
    d = DDPM(dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 50, 200, 500, 999])
    x0 = torch.rand((5, 1, 4, 4), generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn((5, 1, 4, 4), generator=g, dtype=torch.float64)
    eps_hat = eps + 0.1 * torch.randn((5, 1, 4, 4), generator=g, dtype=torch.float64)
    x_t = d.q_sample(x0, t, eps)
    x0_err = (d.predict_x0(x_t, t, eps_hat) - x0).pow(2).flatten(1).mean(1)
    eps_err = (eps_hat - eps).pow(2).flatten(1).mean(1)
    snr = d.alpha_bars[t] / (1 - d.alpha_bars[t])
    torch.testing.assert_close(x0_err * snr.clamp(max=5), eps_err * d.min_snr_weights(t, 5.0))
    w = d.min_snr_weights(t, 5.0)
    assert w[0] < 1e-3 and (w[3:] == 1).all()  # nearly clean steps down-weighted, noisy ones untouched


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
        return (x - d._at(d.sqrt_alpha_bars, t) * x0) / d._at(d.sqrt_one_minus_alpha_bars, t)

    assert d.mean_error(exact, x0, generator=g) < 1e-5
    # at t = 0 the identity is far off: eps-hat = x_t carries x0's mean, and eps's is missed
    assert d.mean_error(lambda x, t: x, x0, t=0, generator=g) > 0.5 * ignores
