"""The reference ``sgd_momentum_step``, ``adagrad_step`` and ``rmsprop_step`` (docs/exercises.md §17-19)
checked against ``torch.optim.SGD(momentum=...)``, ``torch.optim.Adagrad`` and ``torch.optim.RMSprop``.

Each optimizer is stepped beside its torch twin for 20 steps: on a least-squares model (each
follows its own trajectory, so the gradients depend on the parameters) and on fixed gradient
sequences of tiny, ordinary and huge magnitude, with exact zeros, and eps at its edges (0 with
nonzero gradients, the default, 1 and above). Parameters and states are compared after every
step, in float64 and float32. Hypothesis varies shapes, layouts, hyperparameters and scales. The
conventions shared with ``adam_step`` (in place, no history, gradients kept, returns None) are
checked once for all three. The helpers are test_reference.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_reference import (
    DTYPE_IDS, EXACT, FLOAT_DTYPES, LAYOUTS, PROPERTIES, assert_close, generator, random_tensor, tol, widened,
)

from reference import adagrad_step, rmsprop_step, sgd_momentum_step

#: Steps of every trajectory.
STEPS = 20


@dataclass(frozen=True)
class Optimizer:
    """One exercise beside its torch twin: how to call each, and where torch keeps the state."""

    name: str
    step: Callable
    make_torch: Callable  # (params, lr, **options) -> torch.optim.Optimizer
    state_key: str  # the key of torch's per-parameter state that the exercise's state mirrors
    options: tuple[str, ...]  # the exercise's keyword options besides lr

    def call(self, params, states, lr, options):
        return self.step(params, states, lr, **options)

    def torch_state(self, optimizer, p):
        # SGD with momentum 0 keeps no buffer: its velocity is the gradient itself.
        return optimizer.state[p].get(self.state_key, p.grad)


OPTIMIZERS = {
    "sgd_momentum_step": Optimizer(
        "sgd_momentum_step", sgd_momentum_step,
        lambda params, lr, momentum: torch.optim.SGD(params, lr=lr, momentum=momentum, foreach=False),
        "momentum_buffer", ("momentum",)),
    "adagrad_step": Optimizer(
        "adagrad_step", adagrad_step,
        lambda params, lr, eps=1e-10: torch.optim.Adagrad(params, lr=lr, eps=eps, foreach=False),
        "sum", ("eps",)),
    "rmsprop_step": Optimizer(
        "rmsprop_step", rmsprop_step,
        lambda params, lr, alpha=0.99, eps=1e-8: torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, foreach=False),
        "square_avg", ("alpha", "eps")),
}

#: Per optimizer: configuration name -> (lr, options, gradient scale). The sequences include an
#: optimizer's defaults, the eps edge cases (0 with nonzero gradients, 1, 10: eps inside or outside
#: the square root then differ by far), gradients far below eps and far above 1.
CONFIGS = {
    "sgd_momentum_step": {
        "momentum 0.9": (0.01, {"momentum": 0.9}, 1.0),
        "no momentum": (0.1, {"momentum": 0.0}, 1.0),
        "momentum 0.99": (0.01, {"momentum": 0.99}, 1.0),
        "tiny gradients": (0.1, {"momentum": 0.9}, 1e-12),
        "huge gradients": (1e-3, {"momentum": 0.5}, 1e8),
    },
    "adagrad_step": {
        "defaults": (0.1, {}, 1.0),
        "eps 0": (0.1, {"eps": 0.0}, 1.0),
        "eps 1": (0.5, {"eps": 1.0}, 1.0),
        "eps 10, huge gradients": (0.5, {"eps": 10.0}, 1e8),
        "tiny gradients": (0.1, {}, 1e-12),
        "tiny gradients, eps 1e-6": (0.1, {"eps": 1e-6}, 1e-7),
        "huge gradients": (0.01, {}, 1e10),
    },
    "rmsprop_step": {
        "defaults": (0.01, {}, 1.0),
        "short memory": (0.01, {"alpha": 0.5}, 1.0),
        "alpha 0": (0.01, {"alpha": 0.0, "eps": 1e-8}, 1.0),
        "eps 0": (0.01, {"eps": 0.0}, 1.0),
        "eps 1": (0.1, {"eps": 1.0}, 1.0),
        "tiny gradients": (0.01, {}, 1e-12),
        "tiny gradients, eps 1e-6": (0.01, {"alpha": 0.9, "eps": 1e-6}, 1e-7),
        "huge gradients": (0.01, {"alpha": 0.9}, 1e10),
    },
}
CASES = [(name, config) for name, configs in CONFIGS.items() for config in configs]
#: The configurations with gradients of ordinary size (tiny and huge ones are fed as fixed sequences:
#: SGD diverges on a least-squares loss scaled up by 1e8).
ORDINARY_CASES = [(name, config) for name, config in CASES if CONFIGS[name][config][2] == 1.0]


def _step_bound(name: str, lr: float, options: dict, grad_scale: float) -> float:
    """A bound on how far one step moves a parameter with gradients of size ~grad_scale: rounding
    errors of a trajectory scale with it (and with the number of steps), not with the parameters."""
    if name == "sgd_momentum_step":
        return 4 * lr * grad_scale / (1 - options["momentum"])
    eps = options.get("eps", 1e-8)
    # g / (sqrt(s) + eps) <= 1 / sqrt(1 - alpha) for RMSProp (s >= (1 - alpha) g^2) and 1 for Adagrad.
    return lr / (1 - options.get("alpha", 0.0)) ** 0.5 * (1.0 if eps == 0 else 1.0 + 1 / (1 + eps))


def _zeros(params):
    return [torch.zeros_like(p) for p in params]


def _compare(case, ours, theirs, states, optimizer, opt, t, dtype, bound, grad_scale, options):
    tolerance = widened(tol(opt.name, dtype), atol_factor=bound * t)
    # The state is a velocity (~ g / (1 - momentum)), a sum of t squared gradients or an average of them.
    state_scale = {"sgd_momentum_step": grad_scale / (1 - options.get("momentum", 0.0)),
                   "adagrad_step": grad_scale**2 * t, "rmsprop_step": grad_scale**2}[opt.name]
    for i, (p, q, s) in enumerate(zip(ours, theirs, states)):
        what = f"{opt.name} {case} {dtype} step {t}"
        assert_close(p.detach(), q.detach(), tolerance, f"{what}: param {i}")
        assert_close(s, opt.torch_state(optimizer, q), widened(tol(opt.name, dtype), atol_factor=state_scale),
                     f"{what}: state of param {i}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name, config", ORDINARY_CASES, ids=[f"{n}-{c}" for n, c in ORDINARY_CASES])
def test_trajectory_on_least_squares_matches_torch(name, config, dtype):
    """Two copies of a least-squares model, one per optimizer, each following its own trajectory."""
    opt = OPTIMIZERS[name]
    lr, options, grad_scale = CONFIGS[name][config]
    gen = generator(31)
    X, y = random_tensor((32, 3), dtype, gen), random_tensor((32, 2), dtype, gen)
    init = [random_tensor((3, 2), dtype, gen, layout="transposed"), random_tensor((2,), dtype, gen)]
    ours = [p.clone().requires_grad_() for p in init]
    theirs = [p.clone().requires_grad_() for p in init]
    states = _zeros(ours)
    optimizer = opt.make_torch(theirs, lr, **options)
    for t in range(1, STEPS + 1):
        for params in (ours, theirs):
            loss = grad_scale * ((X @ params[0] + params[1] - y) ** 2).mean()
            for p, g in zip(params, torch.autograd.grad(loss, params)):
                p.grad = g
        grads_before = [p.grad.clone() for p in ours]
        assert opt.call(ours, states, lr, options) is None, f"{name} returned a value"
        optimizer.step()
        # The gradient of the scaled loss is ~ grad_scale * (residual size ~ a few).
        _compare(config, ours, theirs, states, optimizer, opt, t, dtype, _step_bound(name, lr, options, 4 * grad_scale),
                 4 * grad_scale, options)
        for i, p in enumerate(ours):
            assert_close(p.grad, grads_before[i], EXACT, f"{name} {config}: gradient of param {i} changed")


def _gradient_sequence(shapes, dtype, gen, *, scale, steps=STEPS, layout="contiguous", zeros=True):
    """``steps`` lists of gradients shaped like the params; a quarter of the entries exactly zero."""
    sequence = []
    for _ in range(steps):
        step = []
        for shape in shapes:
            g = random_tensor(shape, dtype, gen, layout=layout, scale=scale)
            if zeros:
                g = g * (torch.rand(g.shape, generator=gen) >= 0.25).to(dtype)
            step.append(g)
        sequence.append(step)
    return sequence


def _run_fixed(name, config, lr, options, sequence, init, dtype, grad_scale):
    """Feed the same gradient sequence to the reference and to torch, comparing after every step."""
    opt = OPTIMIZERS[name]
    ours = [p.detach().clone().requires_grad_() for p in init]  # clone keeps a non-contiguous layout
    theirs = [p.detach().clone().requires_grad_() for p in init]
    states = _zeros(ours)
    optimizer = opt.make_torch(theirs, lr, **options)
    bound = _step_bound(name, lr, options, grad_scale)
    for t, step in enumerate(sequence, start=1):
        for p, q, g in zip(ours, theirs, step):
            p.grad, q.grad = g.clone(), g.clone()
        assert opt.call(ours, states, lr, options) is None, f"{name} returned a value"
        optimizer.step()
        _compare(config, ours, theirs, states, optimizer, opt, t, dtype, bound, grad_scale, options)
    return ours


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name, config", CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_trajectory_on_fixed_gradients_matches_torch(name, config, dtype):
    lr, options, grad_scale = CONFIGS[name][config]
    eps_zero = options.get("eps", 1.0) == 0.0
    gen = generator(32)
    shapes = [(4, 3), (5,), ()]
    init = [random_tensor(s, dtype, gen) for s in shapes]
    # With eps = 0 a zero gradient on a zero state is 0 / 0: torch gives nan as well; not a case.
    sequence = _gradient_sequence(shapes, dtype, gen, scale=grad_scale, zeros=not eps_zero)
    params = _run_fixed(name, config, lr, options, sequence, init, dtype, grad_scale)
    assert all(torch.isfinite(p).all() for p in params), f"{name} {config}: non-finite parameters"


def test_first_steps_by_hand():
    """One parameter, gradients 2 then 4, worked out on paper."""
    p = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    (v,) = velocities = _zeros([p])
    for g, v_want, p_want in ((2.0, 2.0, 0.8), (4.0, 5.8, 0.22)):  # momentum 0.9, lr 0.1: v = 0.9 v + g
        p.grad = torch.tensor([g], dtype=torch.float64)
        sgd_momentum_step([p], velocities, 0.1, 0.9)
        assert_close(v, torch.tensor([v_want], dtype=torch.float64), EXACT, f"velocity after g = {g}")
        assert_close(p.detach(), torch.tensor([p_want], dtype=torch.float64), tol("sgd_momentum_step", torch.float64), f"param after g = {g}")
    p = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    (s,) = states = _zeros([p])
    for g, s_want, p_want in ((3.0, 9.0, 0.5), (4.0, 25.0, 0.1)):  # lr 0.5, eps 0: p -= 0.5 g / sqrt(s)
        p.grad = torch.tensor([g], dtype=torch.float64)
        adagrad_step([p], states, 0.5, eps=0.0)
        assert_close(s, torch.tensor([s_want], dtype=torch.float64), EXACT, f"Adagrad sum after g = {g}")
        assert_close(p.detach(), torch.tensor([p_want], dtype=torch.float64), tol("adagrad_step", torch.float64), f"Adagrad param after g = {g}")
    p = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    (s,) = states = _zeros([p])
    p.grad = torch.tensor([2.0], dtype=torch.float64)
    rmsprop_step([p], states, 0.1, alpha=0.75, eps=1.0)  # s = 0.25 * 4 = 1; p = 1 - 0.1 * 2 / (1 + 1)
    assert_close(s, torch.tensor([1.0], dtype=torch.float64), EXACT, "RMSProp average after one step")
    assert_close(p.detach(), torch.tensor([0.9], dtype=torch.float64), tol("rmsprop_step", torch.float64), "RMSProp param (eps after the root)")


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_in_place_without_history_keeping_gradients(name):
    opt = OPTIMIZERS[name]
    gen = generator(33)
    params = [random_tensor((3, 2), torch.float64, gen).requires_grad_(), random_tensor((4,), torch.float64, gen).requires_grad_()]
    states = _zeros(params)
    pointers = [t.data_ptr() for t in (*params, *states)]
    objects = [*params, *states]
    for t in range(2):
        for p in params:
            p.grad = random_tensor(p.shape, torch.float64, gen)
        grads = [p.grad for p in params]
        copies = [g.clone() for g in grads]
        before = [p.detach().clone() for p in params]
        options = dict(momentum=0.9) if name == "sgd_momentum_step" else {}
        assert opt.call(params, states, 0.1, options) is None, f"{name} returned a value"
        for i, p in enumerate(params):
            assert p.grad is grads[i], f"{name} replaced the gradient of param {i}"
            assert_close(p.grad, copies[i], EXACT, f"{name} changed (or zeroed) the gradient of param {i}")
            assert not torch.equal(p.detach(), before[i]), f"{name} did not move param {i}"
    assert [t.data_ptr() for t in (*params, *states)] == pointers, f"{name} replaced a param or state tensor"
    assert all(a is b for a, b in zip([*params, *states], objects)), f"{name} rebound a param or state"
    assert all(p.is_leaf and p.requires_grad and p.grad_fn is None for p in params), f"{name}: param history"
    assert all(s.grad_fn is None and not s.requires_grad for s in states), f"{name}: state history"
    assert all((s != 0).any() for s in states), f"{name} did not update its states"


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_meta_device_and_dtype_are_kept(name, dtype):
    opt = OPTIMIZERS[name]
    params = [torch.empty(3, 2, device="meta", dtype=dtype, requires_grad=True)]
    params[0].grad = torch.empty(3, 2, device="meta", dtype=dtype)
    states = _zeros(params)
    options = dict(momentum=0.9) if name == "sgd_momentum_step" else {}
    opt.call(params, states, 0.1, options)
    for t in (*params, *states):
        assert t.device.type == "meta" and t.dtype == dtype and t.shape == (3, 2), f"{name}: {t}"


@PROPERTIES
@given(
    name=st.sampled_from(list(OPTIMIZERS)),
    shapes=st.lists(st.lists(st.integers(1, 4), max_size=2), min_size=1, max_size=3),
    steps=st.integers(1, 8),
    lr=st.sampled_from([1e-3, 0.1, 1.0]),
    momentum=st.floats(0.0, 0.99),
    alpha=st.floats(0.0, 0.999),
    eps=st.sampled_from([1e-10, 1e-8, 1e-3, 1.0]),
    grad_scale=st.sampled_from([1e-9, 1.0, 1e6]),
    layout=st.sampled_from(LAYOUTS[:3]),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_optimizer_property(name, shapes, steps, lr, momentum, alpha, eps, grad_scale, layout, dtype, seed):
    """Random gradient sequences fed to the reference and to its torch twin."""
    options = {"sgd_momentum_step": {"momentum": momentum}, "adagrad_step": {"eps": eps},
               "rmsprop_step": {"alpha": alpha, "eps": eps}}[name]
    gen = generator(seed)
    shapes = [tuple(s) for s in shapes]
    init = [random_tensor(s, dtype, gen, layout=layout) for s in shapes]
    sequence = _gradient_sequence(shapes, dtype, gen, scale=grad_scale, steps=steps, layout=layout)
    config = f"shapes={shapes} lr={lr} options={options} grad_scale={grad_scale} layout={layout}"
    _run_fixed(name, config, lr, options, sequence, init, dtype, grad_scale)
