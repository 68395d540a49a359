"""The samplers (hw3_utils/sampling.py) against the papers' equations, written out here in float64."""

from __future__ import annotations

import pytest
import torch

from hw3_utils import DDPM, Config, build_model, sample
from hw3_utils.sampling import clipped, respaced, strided_timesteps


def _stub(x, t):
    """A noise predictor with a closed form that depends on both x_t and t."""
    return 0.3 * x + 1e-3 * t.to(x.dtype).view(-1, 1, 1, 1)


def _big(x, t):
    """A noise predictor whose x0-hat lies far outside [-1, 1], so that clipping matters."""
    return -5 * x + 1e-3 * t.to(x.dtype).view(-1, 1, 1, 1)


def reference(model, betas, n, shape, seed, tau=None, clip=False, eta=None, variance="posterior"):
    """Algorithm 2 (DDPM) or DDIM in float64 from the papers' equations: every state from x_T to x_0.

    betas: the (T,) schedule; tau: the ascending code indices visited (all T when None). eta None:
    ancestral sampling on the schedule that keeps alpha-bar at tau (the mean from eq. 7 at x0-hat,
    sigma^2 = beta-tilde or beta); else DDIM eq. 12 with sigma from eq. 16. Noise in the kit's order
    from one generator: x_T, then one draw per ancestral step (the last one unused), or per DDIM step
    with eta > 0 but the last. clip: x0-hat clipped to [-1, 1] and the noise prediction it implies used.
    """
    g = torch.Generator().manual_seed(seed)
    tau = list(range(len(betas))) if tau is None else tau
    ab_all = torch.cumprod(1 - betas.double(), dim=0)
    x = torch.randn((n, *shape), generator=g).double()
    states = [x]
    for i in reversed(range(len(tau))):
        ab = ab_all[tau[i]]
        ab_prev = ab_all[tau[i - 1]] if i > 0 else torch.tensor(1.0, dtype=torch.float64)  # alpha-bar_0 = 1
        eps = model(x, torch.full((n,), tau[i])).double()
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()  # eq. 4 solved for x0
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        if eta is None:
            beta = 1 - ab / ab_prev
            mean = ab_prev.sqrt() * beta / (1 - ab) * x0 + (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab) * x  # eq. 7
            var = beta if variance == "beta" else (1 - ab_prev) / (1 - ab) * beta
            z = torch.randn(x.shape, generator=g).double()
            x = mean + (var.sqrt() * z if i > 0 else 0)
        else:
            sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()  # DDIM eq. 16
            x = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps  # DDIM eq. 12
            if eta > 0 and i > 0:
                x = x + sigma * torch.randn(x.shape, generator=g).double()
        states.append(x)
    return states


def close(got, want):
    return torch.allclose(got.double(), want.clamp(-1, 1), rtol=1e-4, atol=1e-4)


SHAPE = (1, 4, 4)


@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_ddpm_with_all_steps_is_algorithm_2(variance):
    d = DDPM(variance=variance)
    got = sample(_stub, d, n=3, shape=SHAPE, generator=torch.Generator().manual_seed(4), progress=False)
    want = reference(_stub, d.betas, 3, SHAPE, 4, variance=variance)
    assert close(got, want[-1])


@pytest.mark.parametrize("clip", [False, True])
def test_ddpm_on_fewer_steps_is_algorithm_2_on_the_respaced_schedule(clip):
    d = DDPM()
    got = sample(_big, d, n=3, shape=SHAPE, steps=20, clip=clip, generator=torch.Generator().manual_seed(4),
                 progress=False)
    want = reference(_big, d.betas, 3, SHAPE, 4, tau=list(range(0, 1000, 50)), clip=clip)
    assert close(got, want[-1])


def test_clipping_on_all_steps_matches_the_reference():
    d = DDPM(100)
    got = sample(_big, d, n=2, shape=SHAPE, clip=True, generator=torch.Generator().manual_seed(9), progress=False)
    assert close(got, reference(_big, d.betas, 2, SHAPE, 9, clip=True)[-1])


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("clip", [False, True])
def test_ddim_is_ddim_eq_12(eta, clip):
    d = DDPM()
    got = sample(_big, d, n=3, shape=SHAPE, method="ddim", steps=25, eta=eta, clip=clip,
                 generator=torch.Generator().manual_seed(2), progress=False)
    want = reference(_big, d.betas, 3, SHAPE, 2, tau=list(range(0, 1000, 40)), eta=eta, clip=clip)
    assert close(got, want[-1])


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
def test_snapshots_are_the_reference_states_labelled_with_their_timestep(method):
    d = DDPM()
    g = torch.Generator().manual_seed(6)
    images, frames, labels = sample(_stub, d, n=2, shape=SHAPE, method=method, steps=100, snapshots=5,
                                    generator=g, progress=False)
    tau = list(range(0, 1000, 10))
    states = reference(_stub, d.betas, 2, SHAPE, 6, tau=tau, eta=None if method == "ddpm" else 0.0)
    done = [0, 25, 50, 75, 100]  # steps done at each of 5 evenly spaced frames of 100 steps
    assert labels == [991, 741, 491, 241, 0]  # x_T is x_991 here (tau starts at code index 990), x_0 last
    assert all(close(frames[k], states[s]) for k, s in enumerate(done))
    assert torch.equal(frames[-1], images.cpu())


def test_snapshots_of_all_steps_span_noise_to_image():
    x_T = torch.randn((2, 3, 28, 28), generator=torch.Generator().manual_seed(0))
    images, frames, labels = sample(_big, DDPM(1000), n=2, snapshots=8, generator=torch.Generator().manual_seed(0),
                                    progress=False)
    assert frames.shape == (8, 2, 3, 28, 28)
    assert labels[0] == 1000 and labels[-1] == 0 and labels == sorted(labels, reverse=True)
    assert torch.equal(frames[-1], images) and torch.equal(frames[0], x_T.clamp(-1, 1))


def test_same_generator_gives_same_samples():
    model = build_model(Config(model_channels=8)).eval()
    d = DDPM(20)
    a, b, c = (sample(model, d, n=3, generator=torch.Generator().manual_seed(s), progress=False) for s in (7, 7, 8))
    assert a.shape == (3, 3, 28, 28) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
def test_batched_sampling_equals_sequence_of_batches(method):
    d = DDPM(20)
    kw = dict(shape=SHAPE, method=method, eta=1.0, progress=False)
    whole = sample(_stub, d, n=4, batch_size=2, generator=torch.Generator().manual_seed(3), **kw)
    g = torch.Generator().manual_seed(3)
    assert torch.equal(whole, torch.cat([sample(_stub, d, n=2, generator=g, **kw) for _ in range(2)]))


def test_ddim_with_eta_0_draws_no_noise_after_x_T():
    d = DDPM()
    g, only_x_T = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a = sample(_stub, d, n=2, shape=SHAPE, method="ddim", steps=10, generator=g, progress=False)
    torch.randn((2, *SHAPE), generator=only_x_T)
    assert torch.equal(g.get_state(), only_x_T.get_state())
    c = sample(_stub, d, n=2, shape=SHAPE, method="ddim", steps=10, eta=1.0, progress=False,
               generator=torch.Generator().manual_seed(0))
    assert not torch.equal(a, c)


def test_ddim_full_steps_eta1_variance_equals_ddpm_beta_tilde():
    # DDIM eq. 16: eta=1 with all T steps gives sigma_t^2 = beta-tilde_t, DDPM's posterior variance
    d = DDPM(100)
    t, tp = 50, 49
    ab, ab_prev = d.alpha_bars[t], d.alpha_bars[tp]
    sigma2 = (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)
    assert sigma2.item() == pytest.approx(d.posterior_variance[t].item(), rel=1e-5)


def test_ancestral_sampling_on_a_respaced_schedule_equals_ddim_with_eta_1():
    # DDIM eq. 16 with eta = 1 is DDPM's posterior on the subsequence: the same noise gives the same images
    d = DDPM()
    for clip in (False, True):
        a, b = (sample(_stub, d, n=3, shape=(1, 8, 8), method=m, steps=50, eta=1.0, clip=clip, progress=False,
                       generator=torch.Generator().manual_seed(1)) for m in ("ddpm", "ddim"))
        assert torch.allclose(a, b, atol=1e-4), clip


def test_bad_step_count_and_method_say_what_is_allowed():
    with pytest.raises(ValueError, match=r"steps must be in \[1, 1000\], got 0"):
        sample(_stub, DDPM(), n=1, method="ddim", steps=0, progress=False)
    with pytest.raises(ValueError, match=r"steps must be in \[1, 1000\], got 1001"):
        sample(_stub, DDPM(), n=1, steps=1001, progress=False)
    with pytest.raises(ValueError, match=r"method must be one of \('ddpm', 'ddim'\), got 'euler'"):
        sample(_stub, DDPM(), n=1, method="euler", progress=False)


def test_the_config_picks_the_sampler_and_arguments_override_it():
    d = DDPM()
    cfg = Config(in_channels=1, sampler="ddim", sample_steps=10, clip_denoised=True)

    def draw(c=None, **kw):
        return sample(_big, d, c, n=2, generator=torch.Generator().manual_seed(0), progress=False, **kw)

    explicit = draw(method="ddim", steps=10, clip=True, shape=(1, 28, 28))
    assert explicit.shape == (2, 1, 28, 28) and torch.equal(draw(cfg), explicit)
    assert torch.equal(draw(cfg, method="ddpm", clip=False), draw(method="ddpm", steps=10, shape=(1, 28, 28)))
    assert draw().shape == (2, 3, 28, 28)  # no config: the report's recipe, Config()


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


def test_strided_timesteps_descend_evenly_from_the_top_stride():
    assert strided_timesteps(1000, 100) == list(range(990, -1, -10))
    assert strided_timesteps(1000, 1000) == list(range(999, -1, -1))
    assert strided_timesteps(1000, 3) == [666, 333, 0]


def test_respaced_schedule_keeps_alpha_bar_at_its_timesteps():
    d = DDPM()
    tau = list(range(0, 1000, 10))
    r, net = respaced(d, _stub, strided_timesteps(1000, 100))
    assert r.timesteps == 100
    assert torch.allclose(r.alpha_bars.double(), d.alpha_bars.double()[tau], rtol=1e-6)
    # beta'_1 = beta_1 (tau starts at index 0), then beta'_i = 1 - alpha-bar_tau_i / alpha-bar_tau_(i-1)
    ab = d.alpha_bars.double()[tau]
    assert torch.allclose(r.betas[0], d.betas[0], rtol=1e-5)
    assert torch.allclose(r.betas[1:].double(), 1 - ab[1:] / ab[:-1], rtol=1e-5)
    x, i = torch.randn(2, 1, 4, 4), torch.tensor([3, 99])
    assert torch.equal(net(x, i), _stub(x, torch.tensor([30, 990])))  # asked at the original timesteps
    full, _ = respaced(d, _stub, list(range(1000)))
    assert torch.allclose(full.betas.double(), d.betas.double(), rtol=1e-9)


def test_clipped_model_implies_a_clipped_x0_and_the_posterior_mean_of_eq_7():
    d = DDPM()
    x = 3 * torch.randn(4, 1, 8, 8)
    t = torch.tensor([0, 10, 500, 999])
    big = lambda x, t: -5 * x  # noqa: E731  (an x0-hat far outside [-1, 1])
    eps_c = clipped(d, big)(x, t)
    x0 = d.predict_x0(x, t, eps_c)
    assert torch.allclose(x0, d.predict_x0(x, t, big(x, t)).clamp(-1, 1), atol=1e-4)
    # eq. 11's mean with eps' = eq. 7's posterior mean at the clipped x0-hat (what Ho et al.'s code computes)
    ab, ab_prev = d.alpha_bars[t].view(-1, 1, 1, 1).double(), d.alpha_bars_prev[t].view(-1, 1, 1, 1).double()
    beta, alpha = d.betas[t].view(-1, 1, 1, 1).double(), d.alphas[t].view(-1, 1, 1, 1).double()
    mean7 = (ab_prev.sqrt() * beta / (1 - ab)) * x0.double() + (alpha.sqrt() * (1 - ab_prev) / (1 - ab)) * x.double()
    z = torch.zeros_like(x)
    assert torch.allclose(d.p_sample(clipped(d, big), x, t, noise=z).double(), mean7, atol=1e-3, rtol=1e-3)
