"""The reference implementations (the grader's oracle) checked against PyTorch's own routines.

Every differentiable function is compared with a PyTorch built-in on values and on gradients (a
vector-Jacobian product with a random upstream gradient), in float64 and float32, with the
registry's per-exercise tolerances. A float32 result is compared with the built-in's float64
result on the same (upcast) inputs, rounded to float32: the tolerance bounds the distance from the
truth, not from another float32 implementation's rounding (PyTorch's own float32 attention is
several times further from the truth than the registry's float32 tolerance). The in-place
functions are compared over multi-step trajectories, dropout statistically with a stated bound,
and Hypothesis varies shapes, magnitudes, masks, batch dimensions and memory layouts.
"""

from __future__ import annotations

import inspect
import math
import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import reference
from autograder.course.conventions import Function, OptimizerState
from autograder.course.registry import BY_NAME, EXERCISES, Exercise, PublicCase, Tolerance
from autograder.grading import public

FLOAT_DTYPES = (torch.float64, torch.float32)
DTYPE_IDS = ("float64", "float32")

#: Tolerance for results that must be bit-identical (rescaled survivors, untouched gradients).
EXACT = Tolerance(rtol=0.0, atol=0.0)
#: ``clip_grad_norm_`` scales by theta / (norm + 1e-6) where the contract says theta / norm, so the
#: clipped gradients may differ from it by a relative 1e-6 / norm on top of the dtype's tolerance.
TORCH_CLIP_EPS = 1e-6
#: Probability that a correct dropout fails the drop-rate test (two-sided Hoeffding bound).
DROP_RATE_FAILURE_PROB = 1e-9
#: Elements in the tensor whose drop rate is measured.
DROP_RATE_NUMEL = 1 << 20
#: Hypothesis budget per property: enough to hit the edge cases, small enough for 2 CPU cores.
#: Raise it (e.g. REFERENCE_MAX_EXAMPLES=3000) to hunt for rare mismatches.
#: The same examples on every run (a CI gate must not depend on luck); REFERENCE_EXPLORE=1 draws
#: fresh ones, REFERENCE_MAX_EXAMPLES=N more of them.
PROPERTIES = settings(max_examples=int(os.environ.get("REFERENCE_MAX_EXAMPLES", "40")), deadline=None,
                      derandomize=os.environ.get("REFERENCE_EXPLORE") != "1")
#: The dtype the oracles compute in.
ORACLE_DTYPE = torch.float64

#: The exercises whose result is differentiable with respect to their floating inputs.
DIFFERENTIABLE = ("softmax", "cross_entropy", "dropout", "corr2d", "self_attention", "layer_norm", "multi_head_attention")
#: Memory layouts a property test may hand to a function (see ``random_tensor``).
LAYOUTS = ("contiguous", "transposed", "strided", "expanded")

#: What ``reference`` exports: one function per exercise, plus the notebook-provided helper.
EXPORTS = {e.name for e in EXERCISES} | {"init_adam_states"}


# --------------------------------------------------------------------------------------------
# helpers


def tol(name: str, dtype: torch.dtype) -> Tolerance:
    """The registry's comparison tolerance of exercise ``name`` for ``dtype``."""
    return BY_NAME[name].tolerance(dtype)


def widened(tolerance: Tolerance, *, atol_factor: float = 1.0, extra_rtol: float = 0.0) -> Tolerance:
    """``tolerance`` for results summed from terms of magnitude ``atol_factor`` (rounding errors
    scale with the terms, not with the result), optionally plus a known relative deviation."""
    return Tolerance(rtol=tolerance.rtol + extra_rtol, atol=tolerance.atol * max(1.0, atol_factor))


def assert_close(actual, expected, tolerance: Tolerance, what: str) -> None:
    torch.testing.assert_close(
        actual, expected, rtol=tolerance.rtol, atol=tolerance.atol, msg=lambda m: f"{what}: {m}"
    )


def f64(value) -> torch.Tensor:
    """``value`` (nested lists, a number, a 0-d tensor) as a float64 CPU tensor."""
    return torch.as_tensor(value, dtype=torch.float64)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_tensor(shape, dtype, gen, *, layout="contiguous", scale=1.0) -> torch.Tensor:
    """Standard normal * ``scale`` in ``shape``, laid out in memory as ``layout`` says.

    transposed: a transposed view of the last two dimensions; strided: every other element of a
    twice-as-long last dimension; expanded: a stride-0 broadcast of the first dimension.
    Layouts that need more dimensions than ``shape`` has fall back to ``strided``.
    """
    shape = tuple(shape)
    if layout == "transposed" and len(shape) >= 2:
        base = torch.randn((*shape[:-2], shape[-1], shape[-2]), dtype=dtype, generator=gen)
        return (base * scale).transpose(-2, -1)
    if layout == "expanded" and len(shape) >= 1:
        base = torch.randn((1, *shape[1:]), dtype=dtype, generator=gen)
        return (base * scale).expand(shape)
    if layout in ("strided", "transposed", "expanded") and len(shape) >= 1:
        base = torch.randn((*shape[:-1], 2 * shape[-1]), dtype=dtype, generator=gen)
        return (base * scale)[..., ::2]
    return torch.randn(shape, dtype=dtype, generator=gen) * scale


def is_float(t) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point()


def vjp_of(fn, inputs: dict, *, dtype: torch.dtype | None = None) -> tuple[dict, torch.Tensor]:
    """Call ``fn(**inputs)`` with each floating tensor input as a fresh leaf requiring grad:
    the same storage and strides (non-contiguous inputs stay so), or a copy in ``dtype``."""
    leaves = {n: (t.detach() if dtype is None else t.detach().to(dtype)).requires_grad_() if is_float(t) else t
              for n, t in inputs.items()}
    return leaves, fn(**leaves)


def assert_matches_oracle(fn, oracle, inputs: dict, *, tolerance: Tolerance, what: str, seed: int = 0,
                          grad_tolerance: Tolerance | None = None) -> None:
    """``fn`` agrees with ``oracle`` (run in ORACLE_DTYPE, rounded back to the inputs' dtype) on
    the output and on the gradient of every floating input, for a random upstream gradient."""
    names = [n for n, t in inputs.items() if is_float(t)]
    dtype = inputs[names[0]].dtype  # the output must keep it
    leaves, Y = vjp_of(fn, inputs)
    oracle_leaves, Y_oracle = vjp_of(oracle, inputs, dtype=ORACLE_DTYPE)
    assert_close(Y, Y_oracle.to(dtype), tolerance, f"{what}: output")
    G = torch.randn(Y_oracle.shape, dtype=dtype, generator=generator(seed))
    grads = torch.autograd.grad(Y, [leaves[n] for n in names], G)
    expected = torch.autograd.grad(Y_oracle, [oracle_leaves[n] for n in names], G.to(ORACLE_DTYPE))
    for name, grad, grad_expected in zip(names, grads, expected):
        grad_expected = grad_expected.to(inputs[name].dtype)
        assert_close(grad, grad_expected, grad_tolerance or tolerance, f"{what}: gradient of {name}")


def signature_of(parameter_list: str) -> inspect.Signature:
    namespace: dict = {}
    exec(f"def f({parameter_list}): pass", namespace)  # the registry's own text, trusted
    return inspect.signature(namespace["f"])


# Oracles: PyTorch's own routine for each differentiable exercise, called with the reference's
# parameter names.
def softmax_oracle(X):
    return F.softmax(X, dim=-1)


def cross_entropy_oracle(y_hat, y):
    return F.nll_loss(torch.log(y_hat), y, reduction="none")


def corr2d_oracle(X, K):
    return F.conv2d(X[None, None], K[None, None])[0, 0]


def self_attention_oracle(X, W_q, W_k, W_v, mask=None):
    return F.scaled_dot_product_attention(X @ W_q, X @ W_k, X @ W_v, attn_mask=mask)


# --------------------------------------------------------------------------------------------
# the package: exports and signatures


def test_exports_exactly_the_reference_functions():
    exported = set(reference.__all__)
    assert exported == EXPORTS, f"reference.__all__ is {sorted(exported)}, expected {sorted(EXPORTS)}"
    missing = [n for n in reference.__all__ if not callable(getattr(reference, n, None))]
    assert not missing, f"exported but not defined: {missing}"


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.name)
def test_signature_is_the_registry_signature(exercise: Exercise):
    actual = inspect.signature(getattr(reference, exercise.name))
    expected = signature_of(exercise.signature)
    assert actual == expected, f"reference.{exercise.name}{actual} but the registry declares {expected}"


def test_init_adam_states_gives_zero_pairs_shaped_like_the_params():
    params = [torch.randn(2, 3, dtype=torch.float32, requires_grad=True), torch.randn(4, dtype=torch.float64).t()]
    states = reference.init_adam_states(params)
    assert len(states) == len(params), f"{len(states)} states for {len(params)} params"
    for i, (p, (v, s)) in enumerate(zip(params, states)):
        for name, state in (("v", v), ("s", s)):
            assert_close(state, torch.zeros_like(p), EXACT, f"state {name} of param {i}")
            assert not state.requires_grad, f"state {name} of param {i} requires grad"
        assert v.data_ptr() != s.data_ptr(), f"v and s of param {i} share memory"


# --------------------------------------------------------------------------------------------
# registry public cases


Comparison = tuple[str, torch.Tensor, torch.Tensor]  # (quantity, actual, expected)


def run_public_case(exercise: Exercise, case: PublicCase, *, backward: bool = False) -> list[Comparison]:
    """Run the reference on a registry public case, called through the exercise's calling
    convention as the students' public check calls it: ``[(quantity, actual, expected), ...]``.

    With ``backward``, a function's floating inputs require grad and the summed output is
    back-propagated (to record the backward's operators too).
    """
    made = public.trial(exercise, case)
    values = made.values(exercise)
    if backward and isinstance(exercise.call, Function):
        for name in exercise.call.grad_wrt:
            for leaf in _leaves(values.get(name)):
                if is_float(leaf):
                    leaf.requires_grad_()
    for call in range(made.earlier_calls + 1):
        if made.before_call is not None:
            made.before_call(call)
        result = getattr(reference, exercise.name)(*made.args, **made.kwargs)
    if isinstance(exercise.call, OptimizerState):
        assert result is None, f"{exercise.name} returned a value"
    if backward:
        differentiable = [y for y in _leaves(result) if y.requires_grad]
        if differentiable:
            sum(y.sum() for y in differentiable).backward()
    out = []
    for quantity, actual, expected in made.comparisons(result):
        if isinstance(expected, tuple):  # a tuple of outputs, such as an LSTM's (h', c')
            out += [(f"{quantity}[{i}]", f64(a.detach()), f64(e)) for i, (a, e) in enumerate(zip(actual, expected))]
        else:
            out.append((quantity, f64(actual.detach() if isinstance(actual, torch.Tensor) else actual), f64(expected)))
    return out


def _leaves(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    return [leaf for item in items for leaf in _leaves(item)]


PUBLIC_CASES = [(e, c) for e in EXERCISES for c in e.public_cases]


@pytest.mark.parametrize("exercise, case", PUBLIC_CASES, ids=[f"{e.name}-{c.description}" for e, c in PUBLIC_CASES])
def test_public_case(exercise: Exercise, case: PublicCase):
    for quantity, actual, expected in run_public_case(exercise, case):
        what = f"{exercise.name}, public case {case.description!r}: {quantity}"
        assert_close(actual, expected, exercise.tolerance(torch.float64), what)


# --------------------------------------------------------------------------------------------
# forbidden calls: the reference obeys the rules it grades


class _FunctionRecorder(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        module = getattr(func, "__module__", None) or ""
        self.names.add(f"{module}.{getattr(func, '__qualname__', getattr(func, '__name__', repr(func)))}")
        return func(*args, **(kwargs or {}))


class _OperatorRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func))
        return func(*args, **(kwargs or {}))


def _matches(name: str, pattern: str) -> bool:
    return name == pattern or name.endswith(pattern if pattern.startswith(".") else "." + pattern)


def test_forbidden_call_matcher_can_fire():
    recorder, operators = _FunctionRecorder(), _OperatorRecorder()
    with recorder, operators:
        F.softmax(torch.ones(2, 3, requires_grad=True), dim=-1).sum().backward()
    forbidden = BY_NAME["softmax"].forbidden
    assert any(_matches(n, p) for f in forbidden for p in f.all_patterns() for n in recorder.names), recorder.names
    assert any(op.startswith(a) for f in forbidden for a in f.aten for op in operators.ops), operators.ops


@pytest.mark.parametrize("exercise", [e for e in EXERCISES if e.forbidden and e.public_cases], ids=lambda e: e.name)
def test_reference_makes_no_forbidden_call(exercise: Exercise):
    recorder, operators = _FunctionRecorder(), _OperatorRecorder()
    with recorder, operators:
        for case in exercise.public_cases:
            run_public_case(exercise, case, backward=exercise.name in DIFFERENTIABLE)
    calls = set()
    for forbidden in exercise.forbidden:
        calls |= {f"{n} ({forbidden.name})" for p in forbidden.all_patterns() for n in recorder.names if _matches(n, p)}
        calls |= {f"{op} ({forbidden.name})" for a in forbidden.aten for op in operators.ops if op.startswith(a)}
    assert not calls, f"reference.{exercise.name} makes forbidden calls: {sorted(calls)}"


# --------------------------------------------------------------------------------------------
# softmax


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_softmax_matches_torch(dtype):
    gen = generator(1)
    for shape in [(1, 1), (4, 7), (2, 3, 5), (6,)]:
        X = random_tensor(shape, dtype, gen, scale=3.0)
        assert_matches_oracle(reference.softmax, softmax_oracle, {"X": X}, tolerance=tol("softmax", dtype),
                              what=f"softmax {dtype} {shape}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_softmax_is_stable(dtype):
    X = torch.tensor([[1e30, 1e30, -1e30], [-1e4, 0.0, 1e4], [-math.inf, 5.0, 5.0], [88.0, 89.0, 710.0]], dtype=dtype)
    assert_matches_oracle(reference.softmax, softmax_oracle, {"X": X}, tolerance=tol("softmax", dtype),
                          what=f"softmax {dtype} extreme scores")
    Y = reference.softmax(X)
    assert torch.isfinite(Y).all(), f"softmax of extreme scores is not finite: {Y}"


@PROPERTIES
@given(
    batch=st.lists(st.integers(1, 4), max_size=2),
    q=st.integers(1, 8),
    scale=st.sampled_from([1e-3, 1.0, 30.0, 1e4]),
    layout=st.sampled_from(LAYOUTS),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_softmax_property(batch, q, scale, layout, dtype, seed):
    X = random_tensor((*batch, q), dtype, generator(seed), layout=layout, scale=scale)
    assert_matches_oracle(
        reference.softmax, softmax_oracle, {"X": X}, tolerance=tol("softmax", dtype), seed=seed,
        what=f"softmax shape={tuple(X.shape)} layout={layout} scale={scale} {dtype}",
    )


# --------------------------------------------------------------------------------------------
# cross_entropy


def _probabilities(n, q, dtype, gen, *, scale=1.0, layout="contiguous"):
    logits = random_tensor((n, q), dtype, gen, layout=layout, scale=scale)
    return F.softmax(logits, dim=-1)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_cross_entropy_matches_torch(dtype):
    gen = generator(2)
    y_hat = _probabilities(16, 5, dtype, gen, scale=2.0)
    y = torch.randint(0, 5, (16,), generator=gen)
    assert_matches_oracle(reference.cross_entropy, cross_entropy_oracle, {"y_hat": y_hat, "y": y},
                          tolerance=tol("cross_entropy", dtype), what=f"cross_entropy {dtype}")


@PROPERTIES
@given(
    n=st.integers(1, 8),
    q=st.integers(1, 8),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
    layout=st.sampled_from(["contiguous", "transposed", "strided"]),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_cross_entropy_property(n, q, scale, layout, dtype, seed):
    gen = generator(seed)
    y_hat = _probabilities(n, q, dtype, gen, scale=scale)
    if layout == "transposed":
        y_hat = y_hat.t().contiguous().t()
    elif layout == "strided":
        y_hat = torch.repeat_interleave(y_hat, 2, dim=-1)[:, ::2]
    y = torch.randint(0, q, (n,), generator=gen)
    assert_matches_oracle(reference.cross_entropy, cross_entropy_oracle, {"y_hat": y_hat, "y": y}, seed=seed,
                          tolerance=tol("cross_entropy", dtype),
                          what=f"cross_entropy n={n} q={q} layout={layout} scale={scale} {dtype}")


# --------------------------------------------------------------------------------------------
# corr2d


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_corr2d_matches_torch(dtype):
    gen = generator(3)
    for (h, w), (kh, kw) in [((6, 8), (2, 3)), ((5, 5), (5, 5)), ((4, 7), (1, 1)), ((1, 9), (1, 4))]:
        X, K = random_tensor((h, w), dtype, gen), random_tensor((kh, kw), dtype, gen)
        assert_matches_oracle(reference.corr2d, corr2d_oracle, {"X": X, "K": K}, tolerance=tol("corr2d", dtype),
                              what=f"corr2d X={(h, w)} K={(kh, kw)} {dtype}")


def test_corr2d_does_not_flip_the_kernel():
    X = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    K = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert_close(reference.corr2d(X, K), f64([[1.0, 2.0]]), EXACT, "corr2d with K=[[1, 0]]")


@PROPERTIES
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    data=st.data(),
    scale=st.sampled_from([1.0, 1e3]),
    layout=st.sampled_from(LAYOUTS),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_corr2d_property(h, w, data, scale, layout, dtype, seed):
    kh, kw = data.draw(st.integers(1, h), label="kh"), data.draw(st.integers(1, w), label="kw")
    gen = generator(seed)
    X = random_tensor((h, w), dtype, gen, layout=layout, scale=scale)
    K = random_tensor((kh, kw), dtype, gen, layout=layout, scale=scale)
    # Every output and gradient entry is a sum of up to kh*kw (or h*w) products of size ~scale**2.
    tolerance = widened(tol("corr2d", dtype), atol_factor=scale**2)
    assert_matches_oracle(reference.corr2d, corr2d_oracle, {"X": X, "K": K}, tolerance=tolerance, seed=seed,
                          what=f"corr2d X={(h, w)} K={(kh, kw)} layout={layout} scale={scale} {dtype}")


# --------------------------------------------------------------------------------------------
# dropout


def _nonzero(shape, dtype, gen, *, layout="contiguous"):
    """Random entries bounded away from 0, so that a zero in the output means 'dropped'."""
    X = random_tensor(shape, dtype, gen, layout=layout)
    return X + torch.where(X >= 0, 0.5, -0.5).to(dtype)


@pytest.mark.parametrize("drop_prob", [0.1, 0.5, 0.9])
def test_dropout_drop_rate_within_hoeffding_bound(drop_prob):
    X = torch.ones(DROP_RATE_NUMEL, dtype=torch.float32)
    # P(|rate - p| >= eps) <= 2 exp(-2 n eps^2) = DROP_RATE_FAILURE_PROB for independent drops.
    eps = math.sqrt(math.log(2 / DROP_RATE_FAILURE_PROB) / (2 * DROP_RATE_NUMEL))
    rate = (reference.dropout(X, drop_prob) == 0).double().mean().item()
    assert abs(rate - drop_prob) < eps, f"drop rate {rate:.5f} for drop_prob={drop_prob}, allowed ±{eps:.5f}"


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("drop_prob", [0.2, 0.5, 0.75])
def test_dropout_rescales_survivors_and_masks_the_gradient(drop_prob, dtype):
    gen = generator(4)
    X = _nonzero((64, 33), dtype, gen).requires_grad_()
    Y = reference.dropout(X, drop_prob)
    kept = Y != 0
    assert 0 < kept.sum() < kept.numel(), f"dropout kept {kept.sum()} of {kept.numel()} entries"
    assert Y.dtype == dtype, f"dropout returned {Y.dtype} for {dtype}"
    expected = torch.where(kept, X.detach() / (1 - drop_prob), 0.0)
    assert_close(Y.detach(), expected, EXACT, f"dropout drop_prob={drop_prob}: output (survivors are X / (1 - p))")
    G = torch.randn(Y.shape, dtype=dtype, generator=gen)
    (grad,) = torch.autograd.grad(Y, X, G)
    assert_close(grad, torch.where(kept, G / (1 - drop_prob), 0.0), EXACT,
                 f"dropout drop_prob={drop_prob}: gradient of X (same mask as the output)")


def test_dropout_draws_a_fresh_mask_per_call():
    X = torch.ones(4096, dtype=torch.float64)
    first, second = reference.dropout(X, 0.5) != 0, reference.dropout(X, 0.5) != 0
    assert not torch.equal(first, second), "two dropout calls gave the same mask"


def test_dropout_is_reproducible_with_manual_seed():
    X = torch.ones(4096, dtype=torch.float64)
    torch.manual_seed(1234)
    first = reference.dropout(X, 0.3)
    torch.manual_seed(1234)
    second = reference.dropout(X, 0.3)
    assert_close(first, second, EXACT, "dropout after the same torch.manual_seed")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_dropout_edge_probabilities(dtype):
    X = torch.tensor([[1.0, -2.0], [math.inf, 4.0]], dtype=dtype, requires_grad=True)
    Y = reference.dropout(X, 0.0)
    assert_close(Y, X.detach(), EXACT, "dropout with drop_prob=0")
    Y = reference.dropout(X, 1.0)
    assert_close(Y, torch.zeros_like(X), EXACT, "dropout with drop_prob=1 (no nan)")
    (grad,) = torch.autograd.grad(Y, X, torch.ones_like(Y))
    assert_close(grad, torch.zeros_like(X), EXACT, "gradient of dropout with drop_prob=1")


@pytest.mark.parametrize("drop_prob", [-0.1, 1.5, math.nan, math.inf])
def test_dropout_rejects_invalid_probabilities(drop_prob):
    with pytest.raises(ValueError):
        reference.dropout(torch.ones(3), drop_prob)


@PROPERTIES
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    drop_prob=st.floats(0.0, 1.0),
    layout=st.sampled_from(LAYOUTS),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_dropout_property(shape, drop_prob, layout, dtype, seed):
    gen = generator(seed)
    X = _nonzero(shape, dtype, gen, layout=layout).detach().requires_grad_()
    before = X.detach().clone()
    Y = reference.dropout(X, drop_prob)
    kept = Y != 0
    what = f"dropout shape={shape} layout={layout} drop_prob={drop_prob} {dtype}"
    if drop_prob == 1:
        assert not kept.any(), f"{what}: an element survived"
    G = torch.randn(Y.shape, dtype=dtype, generator=gen)
    (grad,) = torch.autograd.grad(Y, X, G)
    survivors = 1 - drop_prob if drop_prob < 1 else 1.0  # nothing survives when drop_prob == 1
    assert_close(Y.detach(), torch.where(kept, before / survivors, 0.0), EXACT, f"{what}: output")
    assert_close(grad, torch.where(kept, G / survivors, 0.0), EXACT, f"{what}: gradient of X")
    assert_close(X.detach(), before, EXACT, f"{what}: X was modified")


# --------------------------------------------------------------------------------------------
# clip_grad


def _with_grads(grads) -> list[torch.Tensor]:
    """Parameters whose ``.grad`` are ``grads`` (None for a parameter without gradient)."""
    params = []
    for g in grads:
        p = torch.zeros((2,), dtype=torch.float64) if g is None else torch.zeros_like(g)
        p.requires_grad_()
        p.grad = g
        params.append(p)
    return params


def assert_clip_matches_torch(grads, theta, what):
    """reference.clip_grad and clip_grad_norm_ on copies of ``grads``: norm and clipped gradients."""
    ours = _with_grads([None if g is None else g.clone() for g in grads])
    theirs = _with_grads([None if g is None else g.clone() for g in grads])
    grad_objects = [p.grad for p in ours]
    norm = reference.clip_grad(ours, theta)
    norm_expected = torch.nn.utils.clip_grad_norm_(theirs, theta)
    dtype = next(g.dtype for g in grads if g is not None)
    tolerance = tol("clip_grad", dtype)
    assert_close(torch.as_tensor(norm, dtype=dtype), norm_expected, tolerance, f"{what}: returned norm")
    clip_tolerance = widened(tolerance, extra_rtol=TORCH_CLIP_EPS / max(float(norm_expected), theta))
    # The contract's own formula, without the 1e-6, in float64: g * min(1, theta / ||g||).
    norm64 = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads if g is not None))
    factor = min(1.0, theta / norm64) if norm64 > 0 else 1.0
    for i, (p, q, original, g) in enumerate(zip(ours, theirs, grad_objects, grads)):
        assert p.grad is original, f"{what}: param {i}.grad was replaced, not modified in place"
        if q.grad is None:
            assert p.grad is None, f"{what}: param {i} had no gradient but now has one"
            continue
        assert_close(p.grad, q.grad, clip_tolerance, f"{what}: clipped gradient of param {i} vs clip_grad_norm_")
        assert_close(p.grad, (g.double() * factor).to(dtype), tolerance,
                     f"{what}: clipped gradient of param {i} vs g * min(1, theta / ||g||)")
        if factor == 1.0:
            assert_close(p.grad, g, EXACT, f"{what}: gradient of param {i} below theta (must be untouched)")
    return norm


def test_clip_grad_clips_to_theta_exactly():
    grads = [torch.tensor([3.0, 0.0], dtype=torch.float64), torch.tensor([[0.0], [4.0]], dtype=torch.float64)]
    params = _with_grads(grads)
    norm = reference.clip_grad(params, 2.5)
    assert_close(f64(norm), f64(5.0), EXACT, "norm of (3, 4)")
    assert_close(params[0].grad, f64([1.5, 0.0]), tol("clip_grad", torch.float64), "clipped grad 0")
    assert_close(params[1].grad, f64([[0.0], [2.0]]), tol("clip_grad", torch.float64), "clipped grad 1")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_clip_grad_below_threshold_leaves_gradients_untouched(dtype):
    gen = generator(5)
    grads = [random_tensor((3, 4), dtype, gen), random_tensor((5,), dtype, gen, layout="strided"), None]
    norm_value = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads if g is not None))
    for theta in (norm_value * 1.5, norm_value * (1 + 1e-3)):
        params = _with_grads([None if g is None else g.clone() for g in grads])
        pointers = [None if p.grad is None else p.grad.data_ptr() for p in params]
        norm = reference.clip_grad(params, theta)
        assert_close(f64(norm), f64(norm_value), tol("clip_grad", dtype), f"norm below theta={theta}")
        for i, (p, g, ptr) in enumerate(zip(params, grads, pointers)):
            if g is None:
                assert p.grad is None, f"param {i} had no gradient but now has one"
                continue
            assert p.grad.data_ptr() == ptr, f"param {i}.grad moved to new memory"
            assert_close(p.grad, g, EXACT, f"gradient of param {i} below theta={theta} (must be untouched)")


def test_clip_grad_skips_missing_gradients_and_accepts_a_generator():
    grads = [None, torch.tensor([6.0, 8.0], dtype=torch.float64), None]
    params = _with_grads(grads)
    norm = reference.clip_grad((p for p in params), 5.0)
    assert_close(f64(norm), f64(10.0), EXACT, "norm with None grads")
    assert params[0].grad is None and params[2].grad is None, "a None gradient was filled in"
    assert_close(params[1].grad, f64([3.0, 4.0]), tol("clip_grad", torch.float64), "clipped grad")
    assert float(reference.clip_grad(_with_grads([None]), 1.0)) == 0.0, "norm with no gradients at all"


CLIP_STEPS = 8
#: theta -> which steps of the trajectory exceed it (gradient norms run from about 15 down to 3).
CLIP_TRAJECTORIES = {0.5: "all", 5.0: "some", 1e6: "none"}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("theta", list(CLIP_TRAJECTORIES))
def test_clip_grad_trajectory_matches_torch(theta, dtype):
    """A small recurrent network trained with SGD for a few steps: at every step the reference and
    clip_grad_norm_ clip the same gradients; the model then follows the reference's clipped ones."""
    gen = generator(6)
    # The same data in both dtypes (drawn in float64), so that both trajectories clip alike.
    W_xh, W_hh, b_h = (random_tensor(s, torch.float64, gen, scale=0.5).to(dtype) for s in [(3, 4), (4, 4), (4,)])
    inputs, targets = (random_tensor(s, torch.float64, gen).to(dtype) for s in [(6, 5, 3), (5, 4)])
    params = [p.requires_grad_() for p in (W_xh, W_hh, b_h)]
    clipped_steps = 0
    for step in range(CLIP_STEPS):
        H = torch.zeros(5, 4, dtype=dtype)
        for X in inputs:
            H = torch.tanh(X @ W_xh + H @ W_hh + b_h)
        grads = torch.autograd.grad(((H - targets) ** 2).sum(), params)
        norm = assert_clip_matches_torch(list(grads), theta, f"clip_grad theta={theta} {dtype} step {step}")
        clipped_steps += float(norm) > theta
        with torch.no_grad():
            factor = min(1.0, theta / float(norm))
            for p, g in zip(params, grads):
                p -= 0.1 * g * factor
    clipped = {0: "none", CLIP_STEPS: "all"}.get(clipped_steps, "some")
    assert clipped == CLIP_TRAJECTORIES[theta], f"{clipped_steps} of {CLIP_STEPS} steps clipped for theta={theta}"


@PROPERTIES
@given(
    shapes=st.lists(st.lists(st.integers(1, 5), max_size=3), min_size=1, max_size=4),
    missing=st.lists(st.booleans(), min_size=4, max_size=4),
    ratio=st.sampled_from([0.01, 0.5, 0.999, 2.0, 100.0]),
    scale=st.sampled_from([1e-6, 1.0, 1e6]),
    layout=st.sampled_from(LAYOUTS[:3]),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_clip_grad_property(shapes, missing, ratio, scale, layout, dtype, seed):
    gen = generator(seed)
    grads = [random_tensor(s, dtype, gen, layout=layout, scale=scale) for s in shapes]
    grads = [None if gone and i > 0 else g for i, (g, gone) in enumerate(zip(grads, missing))]  # param 0 keeps its grad
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads if g is not None))
    theta = ratio * norm  # clipping iff ratio < 1
    what = f"clip_grad shapes={shapes} missing={missing} layout={layout} ratio={ratio} scale={scale} {dtype}"
    assert_clip_matches_torch(grads, theta, what)


# --------------------------------------------------------------------------------------------
# adam_step

ADAM_CONFIGS = {
    "defaults": dict(lr=0.01),
    "large lr, short memory": dict(lr=0.1, beta1=0.5, beta2=0.9),
    "eps = 1": dict(lr=0.05, eps=1.0),
    "tiny gradients": dict(lr=0.01, grad_scale=1e-10),
    "tiny gradients, eps = 1e-3": dict(lr=0.01, grad_scale=1e-6, eps=1e-3),
    "huge gradients": dict(lr=0.01, grad_scale=1e6),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", list(ADAM_CONFIGS), ids=list(ADAM_CONFIGS))
def test_adam_trajectory_matches_torch(config, dtype):
    """Two copies of a least-squares model, one per optimizer, each following its own trajectory."""
    options = dict(ADAM_CONFIGS[config])
    grad_scale = options.pop("grad_scale", 1.0)
    lr, beta1, beta2 = options["lr"], options.get("beta1", 0.9), options.get("beta2", 0.999)
    eps = options.get("eps", 1e-8)
    gen = generator(7)
    X, y = random_tensor((32, 3), dtype, gen), random_tensor((32, 2), dtype, gen)
    init = [random_tensor((3, 2), dtype, gen, layout="transposed"), random_tensor((2,), dtype, gen)]
    ours = [p.clone().requires_grad_() for p in init]
    theirs = [p.clone().requires_grad_() for p in init]
    states = reference.init_adam_states(ours)
    optimizer = torch.optim.Adam(theirs, lr=lr, betas=(beta1, beta2), eps=eps, foreach=False)
    for t in range(1, 21):
        # Each step moves a param by up to about lr; the rounding of those moves compounds along
        # the trajectory (the next gradient depends on the params), so atol grows with lr * t.
        tolerance = widened(tol("adam_step", dtype), atol_factor=lr * t)
        for params in (ours, theirs):
            loss = grad_scale * ((X @ params[0] + params[1] - y) ** 2).mean()
            for p, g in zip(params, torch.autograd.grad(loss, params)):
                p.grad = g
        grads_before = [p.grad.clone() for p in ours]
        assert reference.adam_step(ours, states, lr, t, beta1, beta2, eps) is None, "adam_step returned a value"
        optimizer.step()
        for i, (p, q, (v, s)) in enumerate(zip(ours, theirs, states)):
            what = f"adam_step {config} {dtype} step {t}"
            assert_close(p.detach(), q.detach(), tolerance, f"{what}: param {i}")
            state = optimizer.state[q]
            assert_close(v, state["exp_avg"], widened(tolerance, atol_factor=grad_scale), f"{what}: v of param {i}")
            s_tolerance = widened(tolerance, atol_factor=grad_scale**2)
            assert_close(s, state["exp_avg_sq"], s_tolerance, f"{what}: s of param {i}")
            assert_close(p.grad, grads_before[i], EXACT, f"{what}: gradient of param {i} changed")


def test_adam_eps_is_added_after_the_square_root():
    p = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    p.grad = torch.tensor([0.25], dtype=torch.float64)
    reference.adam_step([p], reference.init_adam_states([p]), lr=1.0, t=1, eps=1.0)
    # v_hat = 0.25, s_hat = 0.0625: p = 1 - 0.25 / (0.25 + 1); eps inside the root would give 1 - 0.25 / sqrt(1.0625).
    assert_close(p.detach(), f64([0.8]), tol("adam_step", torch.float64), "param after one step with eps=1")


def test_adam_step_is_in_place_without_history():
    params = [torch.randn(3, 2, dtype=torch.float64, requires_grad=True)]
    params[0].grad = torch.randn(3, 2, dtype=torch.float64)
    states = reference.init_adam_states(params)
    pointers = [params[0].data_ptr(), states[0][0].data_ptr(), states[0][1].data_ptr()]
    before = params[0].detach().clone()
    reference.adam_step(params, states, 0.1, 1)
    p, (v, s) = params[0], states[0]
    assert [p.data_ptr(), v.data_ptr(), s.data_ptr()] == pointers, "adam_step replaced a param or state tensor"
    assert p.is_leaf and p.grad_fn is None and p.requires_grad, "the param lost its leaf status or gained history"
    assert v.grad_fn is None and s.grad_fn is None and not v.requires_grad, "the states recorded autograd history"
    assert not torch.equal(p.detach(), before), "adam_step did not move the param"
    assert (v != 0).all() and (s > 0).all(), "adam_step did not update the states"


@PROPERTIES
@given(
    shapes=st.lists(st.lists(st.integers(1, 4), max_size=2), min_size=1, max_size=3),
    steps=st.integers(1, 6),
    lr=st.sampled_from([1e-3, 0.1, 1.0]),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.9999),
    eps=st.sampled_from([1e-8, 1e-3, 1.0]),
    grad_scale=st.sampled_from([1e-8, 1.0, 1e4]),
    layout=st.sampled_from(LAYOUTS[:3]),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_adam_property(shapes, steps, lr, beta1, beta2, eps, grad_scale, layout, dtype, seed):
    """The same random gradient sequence fed to the reference and to torch.optim.Adam."""
    gen = generator(seed)
    init = [random_tensor(s, dtype, gen, layout=layout) for s in shapes]
    ours = [p.detach().clone().requires_grad_() for p in init]  # clone keeps a transposed layout
    theirs = [p.detach().clone().requires_grad_() for p in init]
    states = reference.init_adam_states(ours)
    optimizer = torch.optim.Adam(theirs, lr=lr, betas=(beta1, beta2), eps=eps, foreach=False)
    what = f"adam_step shapes={shapes} lr={lr} betas=({beta1}, {beta2}) eps={eps} grad_scale={grad_scale} {dtype}"
    for t in range(1, steps + 1):
        for p, q in zip(ours, theirs):
            p.grad = random_tensor(p.shape, dtype, gen, layout=layout, scale=grad_scale)
            q.grad = p.grad.clone()
        reference.adam_step(ours, states, lr, t, beta1, beta2, eps)
        optimizer.step()
        for i, (p, q) in enumerate(zip(ours, theirs)):
            # Each step moves a param by at most about lr / (1 - beta1) in any dtype.
            tolerance = widened(tol("adam_step", dtype), atol_factor=lr * t)
            assert_close(p.detach(), q.detach(), tolerance, f"{what}: param {i} at step {t}")


# --------------------------------------------------------------------------------------------
# self_attention


def _attention_inputs(batch, n, d, d_k, d_v, dtype, gen, *, scale=1.0, layout="contiguous"):
    return {
        "X": random_tensor((batch, n, d), dtype, gen, layout=layout, scale=scale),
        "W_q": random_tensor((d, d_k), dtype, gen, layout=layout),
        "W_k": random_tensor((d, d_k), dtype, gen, layout=layout),
        "W_v": random_tensor((d, d_v), dtype, gen, layout=layout),
    }


def _causal(n):
    return torch.ones(n, n, dtype=torch.bool).tril()


def _padding(lengths, n):
    """(batch, 1, n): the first lengths[b] keys of batch element b may be attended to."""
    return (torch.arange(n)[None, :] < torch.tensor(lengths)[:, None])[:, None, :]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding", "causal and padding"])
def test_self_attention_matches_torch(mask_kind, dtype):
    gen = generator(8)
    inputs = _attention_inputs(3, 5, 4, 3, 2, dtype, gen)
    masks = {
        "none": None,
        "causal": _causal(5),
        "padding": _padding([5, 2, 1], 5),
        "causal and padding": _causal(5) & _padding([5, 3, 4], 5),
    }
    inputs["mask"] = masks[mask_kind]
    assert_matches_oracle(reference.self_attention, self_attention_oracle, inputs,
                          tolerance=tol("self_attention", dtype), what=f"self_attention mask={mask_kind} {dtype}")


def test_self_attention_rows_without_allowed_keys_are_zero_with_finite_gradients():
    """Not graded, but must not crash; the reference returns 0 there, as PyTorch's attention does."""
    gen = generator(9)
    inputs = _attention_inputs(2, 4, 3, 3, 3, torch.float64, gen)
    mask = _causal(4).expand(2, 4, 4).clone()
    mask[1, 2] = False  # query 2 of batch element 1 may attend to nothing
    inputs["mask"] = mask
    assert_matches_oracle(reference.self_attention, self_attention_oracle, inputs,
                          tolerance=tol("self_attention", torch.float64), what="self_attention with a fully masked row")
    leaves, Y = vjp_of(reference.self_attention, inputs)
    assert_close(Y[1, 2], torch.zeros_like(Y[1, 2]), EXACT, "output of a query with no allowed key")
    grads = torch.autograd.grad(Y.sum(), [leaves[n] for n in ("X", "W_q", "W_k", "W_v")])
    assert all(torch.isfinite(g).all() for g in grads), "non-finite gradient with a fully masked row"


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_self_attention_is_stable_for_large_scores(dtype):
    gen = generator(10)
    scale = 300.0  # scores of order scale**2 * d = 1e5 or more
    inputs = _attention_inputs(2, 6, 4, 4, 3, dtype, gen, scale=scale)
    inputs["mask"] = _causal(6)
    Y = reference.self_attention(**inputs)
    assert torch.isfinite(Y).all(), f"self_attention with scores ~1e5 is not finite in {dtype}"
    if dtype == torch.float64:  # float32 rounding of scores ~1e5 changes the weights themselves
        assert_matches_oracle(reference.self_attention, self_attention_oracle, inputs,
                              what="self_attention, scores ~1e5",
                              tolerance=widened(tol("self_attention", dtype), atol_factor=scale),
                              grad_tolerance=widened(tol("self_attention", dtype), atol_factor=scale**3))


MASK_SHAPES = ("(n, n)", "(batch, n, n)", "(batch, 1, n)", "(1, n, n)")


@PROPERTIES
@given(
    batch=st.integers(1, 3),
    n=st.integers(1, 6),
    d=st.integers(1, 5),
    d_k=st.integers(1, 4),
    d_v=st.integers(1, 4),
    mask_shape=st.sampled_from((None, *MASK_SHAPES)),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
    layout=st.sampled_from(LAYOUTS),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_self_attention_property(batch, n, d, d_k, d_v, mask_shape, scale, layout, dtype, seed):
    # float32 scores of size scale**2 * d carry rounding errors that the softmax amplifies
    # (conditioning, not a bug): large magnitudes are checked in float64 only.
    assume(dtype == torch.float64 or scale <= 1.0)
    gen = generator(seed)
    inputs = _attention_inputs(batch, n, d, d_k, d_v, dtype, gen, scale=scale, layout=layout)
    if mask_shape is not None:
        sizes = {"batch": batch, "n": n, "1": 1}
        shape = tuple(sizes[dim] for dim in mask_shape.strip("()").split(", "))
        mask = torch.rand(shape, generator=gen) < 0.6
        inputs["mask"] = mask | torch.eye(n, dtype=torch.bool) if shape[-2] == n else mask
    # Outputs are averages of V (size ~scale); gradients of W_q, W_k carry X three times.
    assert_matches_oracle(
        reference.self_attention, self_attention_oracle, inputs, seed=seed,
        tolerance=widened(tol("self_attention", dtype), atol_factor=scale),
        grad_tolerance=widened(tol("self_attention", dtype), atol_factor=scale**3),
        what=f"self_attention batch={batch} n={n} d={d} d_k={d_k} d_v={d_v} mask={mask_shape} layout={layout} "
        f"scale={scale} {dtype}",
    )


# --------------------------------------------------------------------------------------------
# q_learning_update

# Hand-checked updates: (Q before, s, a, r, s_next, done, alpha, gamma, TD error, Q after).
Q_UPDATES = {
    "non-terminal": (
        [[0.0, 0.0, 0.0], [1.0, 2.0, -1.0], [0.5, 0.0, 0.25]], 1, 2, 0.5, 2, False, 0.5, 0.5,
        # target = 0.5 + 0.5 * max(0.5, 0, 0.25) = 0.75; delta = 0.75 - (-1) = 1.75; Q[1, 2] = -1 + 0.875
        1.75, [[0.0, 0.0, 0.0], [1.0, 2.0, -0.125], [0.5, 0.0, 0.25]],
    ),
    "terminal": (
        [[0.0, 0.0, 0.0], [1.0, 2.0, -1.0], [0.5, 0.0, 0.25]], 2, 0, -1.0, 1, True, 0.5, 0.5,
        # target = -1 (Q[1] ignored); delta = -1 - 0.5 = -1.5; Q[2, 0] = 0.5 - 0.75
        -1.5, [[0.0, 0.0, 0.0], [1.0, 2.0, -1.0], [-0.25, 0.0, 0.25]],
    ),
    "self-loop uses the old values": (
        [[1.0, 3.0]], 0, 1, 0.0, 0, False, 1.0, 0.5,
        # target = 0 + 0.5 * 3 = 1.5; delta = 1.5 - 3 = -1.5; Q[0, 1] = 1.5
        -1.5, [[1.0, 1.5]],
    ),
    "negative next values": (
        [[0.0, 0.0], [-4.0, -2.0]], 0, 0, 1.0, 1, False, 0.25, 1.0,
        # target = 1 + max(-4, -2) = -1; delta = -1; Q[0, 0] = -0.25
        -1.0, [[-0.25, 0.0], [-4.0, -2.0]],
    ),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", list(Q_UPDATES), ids=list(Q_UPDATES))
def test_q_learning_update_hand_checked(case, dtype):
    Q_before, s, a, r, s_next, done, alpha, gamma, td_expected, Q_after = Q_UPDATES[case]
    Q = torch.tensor(Q_before, dtype=dtype)
    pointer = Q.data_ptr()
    td_error = reference.q_learning_update(Q, s, a, r, s_next, done, alpha, gamma)
    assert isinstance(td_error, float), f"TD error is a {type(td_error).__name__}, not a float"
    assert td_error == td_expected, f"q_learning_update {case}: TD error {td_error}, expected {td_expected}"
    assert Q.data_ptr() == pointer and Q.dtype == dtype, "Q was not updated in place"
    assert_close(Q, torch.tensor(Q_after, dtype=dtype), EXACT, f"q_learning_update {case}: Q")  # dyadic numbers: exact


@PROPERTIES
@given(
    n_states=st.integers(1, 5),
    n_actions=st.integers(1, 4),
    data=st.data(),
    r=st.floats(-10, 10),
    done=st.booleans(),
    alpha=st.floats(0.0, 1.0),
    gamma=st.floats(0.0, 1.0),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_q_learning_update_property(n_states, n_actions, data, r, done, alpha, gamma, dtype, seed):
    s, s_next = (data.draw(st.integers(0, n_states - 1), label=label) for label in ("s", "s_next"))
    a = data.draw(st.integers(0, n_actions - 1), label="a")
    Q = random_tensor((n_states, n_actions), dtype, generator(seed), scale=5.0)
    table = Q.tolist()
    target = r if done else r + gamma * max(table[s_next])
    td_expected = target - table[s][a]
    table[s][a] += alpha * td_expected
    td_error = reference.q_learning_update(Q, s, a, r, s_next, done, alpha, gamma)
    what = f"q_learning_update s={s} a={a} r={r} s_next={s_next} done={done} alpha={alpha} gamma={gamma} {dtype}"
    tolerance = widened(tol("q_learning_update", dtype), atol_factor=10.0)  # terms up to |r| + |Q| ~ 10
    assert_close(f64(td_error), f64(td_expected), tolerance, f"{what}: TD error")
    unchanged = torch.ones(n_states, n_actions, dtype=torch.bool)
    unchanged[s, a] = False
    expected = torch.tensor(table, dtype=dtype)
    assert_close(Q[unchanged], expected[unchanged], EXACT, f"{what}: entries other than Q[s, a]")
    assert_close(Q[s, a], expected[s, a], tolerance, f"{what}: Q[s, a]")


# --------------------------------------------------------------------------------------------
# common rules: device and dtype preserved, inputs not mutated


def _meta_calls():
    """name -> a call of that function on float32 meta tensors (any allocation without
    ``device=`` would land on the CPU and fail to mix with them), returning its tensors.
    q_learning_update is left out: its Python-float result needs real values."""
    meta = dict(device="meta", dtype=torch.float32)

    def clip():
        params = [torch.empty(3, 2, requires_grad=True, **meta)]
        params[0].grad = torch.empty(3, 2, **meta)
        return [reference.clip_grad(params, 1.0), params[0].grad]

    def adam():
        params = [torch.empty(3, 2, requires_grad=True, **meta)]
        params[0].grad = torch.empty(3, 2, **meta)
        states = reference.init_adam_states(params)
        reference.adam_step(params, states, 0.1, 1)
        return [params[0], *states[0]]

    X3 = torch.empty(2, 4, 3, **meta)
    return {
        "softmax": lambda: [reference.softmax(torch.empty(2, 5, **meta))],
        "cross_entropy": lambda: [
            reference.cross_entropy(torch.empty(4, 3, **meta), torch.zeros(4, dtype=torch.int64, device="meta"))
        ],
        "dropout": lambda: [reference.dropout(torch.empty(4, 3, **meta), 0.5)],
        "corr2d": lambda: [reference.corr2d(torch.empty(5, 4, **meta), torch.empty(2, 2, **meta))],
        "clip_grad": clip,
        "adam_step": adam,
        "self_attention": lambda: [reference.self_attention(X3, *(torch.empty(3, 2, **meta) for _ in range(3)),
                                                            mask=torch.ones(4, 4, dtype=torch.bool, device="meta"))],
    }


@pytest.mark.parametrize("name", list(_meta_calls()))
def test_outputs_stay_on_the_input_device_and_dtype(name):
    for i, out in enumerate(_meta_calls()[name]()):
        assert isinstance(out, torch.Tensor), f"{name}: result {i} is a {type(out).__name__}"
        where = f"{name}: result {i} is {out.dtype} on {out.device}"
        assert out.device.type == "meta" and out.dtype == torch.float32, where


NON_MUTATING = {
    "softmax": lambda gen: {"X": random_tensor((3, 4), torch.float64, gen)},
    "cross_entropy": lambda gen: {"y_hat": _probabilities(3, 4, torch.float64, gen), "y": torch.tensor([0, 3, 1])},
    "dropout": lambda gen: {"X": random_tensor((3, 4), torch.float64, gen), "drop_prob": 0.5},
    "corr2d": lambda gen: {
        "X": random_tensor((4, 4), torch.float64, gen),
        "K": random_tensor((2, 3), torch.float64, gen),
    },
    "self_attention": lambda gen: {**_attention_inputs(2, 3, 4, 2, 2, torch.float64, gen), "mask": _causal(3)},
    "layer_norm": lambda gen: {"X": random_tensor((2, 3, 4), torch.float64, gen), "gamma": random_tensor((4,), torch.float64, gen),
                               "beta": random_tensor((4,), torch.float64, gen)},
    "multi_head_attention": lambda gen: {"X": random_tensor((2, 3, 4), torch.float64, gen),
                                         **{w: random_tensor((4, 4), torch.float64, gen) for w in ("W_q", "W_k", "W_v", "W_o")},
                                         "num_heads": 2, "mask": _causal(3)},
}


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_inputs_are_not_mutated(name):
    inputs = NON_MUTATING[name](generator(11))
    tensors = {n: t for n, t in inputs.items() if isinstance(t, torch.Tensor)}
    snapshots = {n: (t.clone(), t._version) for n, t in tensors.items()}
    leaves, Y = vjp_of(getattr(reference, name), inputs)
    Y.sum().backward()
    for n, t in tensors.items():
        before, version = snapshots[n]
        assert t._version == version, f"{name} wrote into its input {n}"
        assert_close(t, before, EXACT, f"{name}: input {n} after the call")


def test_clip_grad_and_adam_step_leave_what_they_do_not_own():
    gen = generator(12)
    p = random_tensor((4,), torch.float64, gen).requires_grad_()
    p.grad = random_tensor((4,), torch.float64, gen, scale=100.0)
    value = p.detach().clone()
    reference.clip_grad([p], 1.0)
    assert_close(p.detach(), value, EXACT, "clip_grad changed a parameter's value")
    grad = p.grad.clone()
    reference.adam_step([p], reference.init_adam_states([p]), 0.1, 1)
    assert_close(p.grad, grad, EXACT, "adam_step changed (or zeroed) a gradient")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.backends.cuda.matmul.allow_tf32 = False
    gen = generator(13)
    cases = {
        "softmax": {"X": random_tensor((4, 7), torch.float32, gen)},
        "cross_entropy": {"y_hat": _probabilities(4, 3, torch.float32, gen), "y": torch.tensor([0, 2, 1, 1])},
        "corr2d": {"X": random_tensor((6, 5), torch.float32, gen), "K": random_tensor((3, 2), torch.float32, gen)},
        "self_attention": {**_attention_inputs(2, 5, 4, 3, 2, torch.float32, gen), "mask": _causal(5)},
    }
    for name, inputs in cases.items():
        on_cuda = {n: t.cuda() for n, t in inputs.items()}
        Y = getattr(reference, name)(**on_cuda)
        assert Y.device.type == "cuda", f"{name} returned a tensor on {Y.device}"
        assert_close(Y.cpu(), getattr(reference, name)(**inputs), tol(name, torch.float32), f"{name} on CUDA vs CPU")
    Y = reference.dropout(torch.ones(1000, device="cuda"), 0.5)
    assert Y.device.type == "cuda" and set(Y.unique().tolist()) <= {0.0, 2.0}, "dropout on CUDA"
