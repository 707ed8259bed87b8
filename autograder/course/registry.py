"""The exercise registry: every graded function is declared here, once.

An exercise's ``name`` is at the same time the student's function, the reference function
(``reference.<name>``), the hidden suite (``autograder/suites/test_<name>.py``), the nbgrader
``grade_id`` of its solution cell and the heading of its feedback. Stubs, public checks, hidden
suites, points and reports are derived from these declarations; nothing here is retyped elsewhere.

The contract of each function is docs/exercises.md (kept in sync by tests/course/test_registry.py and
tests/grading/test_forbidden.py); how the grader calls it is its calling convention (``conventions.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from autograder.course import hints
from autograder.course.conventions import (Convention, EpisodeLoop, Function, GradsInPlace, ModuleTransform,
                                           OptimizerState, RecurrentCell, TableUpdate)


@dataclass(frozen=True)
class Tolerance:
    """``torch.testing.assert_close`` tolerances for one floating dtype (both or neither)."""

    rtol: float
    atol: float


#: Tolerances of ``torch.testing.assert_close`` for float32 and float64.
DEFAULT_TOLERANCES: Mapping[str, Tolerance] = MappingProxyType(
    {"float32": Tolerance(rtol=1.3e-6, atol=1e-5), "float64": Tolerance(rtol=1e-7, atol=1e-7)}
)
#: ``torch.testing.assert_close``'s tolerances for the half-precision dtypes no exercise is graded
#: in, used when a student's result comes back in one of them and its values are compared at that
#: precision (``compare.expect_close(..., strict_dtype=False)``: the dtype is another test's).
LOW_PRECISION_TOLERANCES: Mapping[str, Tolerance] = MappingProxyType(
    {"float16": Tolerance(rtol=1e-3, atol=1e-5), "bfloat16": Tolerance(rtol=1.6e-2, atol=1e-5)}
)


def default_tolerance(dtype: Any) -> Tolerance:
    """The default tolerance of a dtype (float32, float64, the half-precision ones); float64's for
    any other dtype (integers, booleans, complex: compared as exactly as float64 allows)."""
    key = str(dtype).removeprefix("torch.")
    return DEFAULT_TOLERANCES.get(key) or LOW_PRECISION_TOLERANCES.get(key) or DEFAULT_TOLERANCES["float64"]


@dataclass(frozen=True)
class Forbidden:
    """A library routine that would make an exercise trivial.

    ``name`` is the qualified name as docs/exercises.md spells it. ``patterns`` are the dotted names the
    static scan and the ``TorchFunctionMode`` recorder match (attribute chains as written in source,
    ``__module__ + '.' + __qualname__`` at run time); ``aten`` the dispatcher operators (prefix
    match on ``str(op)``) that only this routine reaches.
    """

    name: str
    patterns: tuple[str, ...] = ()
    aten: tuple[str, ...] = ()

    def all_patterns(self) -> tuple[str, ...]:
        return (self.name, *self.patterns)


@dataclass(frozen=True)
class PublicCase:
    """A visible example: arguments as Python literals, and the expected result.

    Tensors are written as nested lists and built with the argument's (or the named output's)
    ``dtype``, float64 unless ``dtypes`` says otherwise. Public cases are shown to students, so the hidden suites never rely
    on them.
    """

    description: str
    args: Mapping[str, Any]
    expected: Any
    dtypes: Mapping[str, str] = field(default_factory=dict)
    hint: str = ""  # shown when the case fails: the hint of the graded test it previews (course/hints.py)


@dataclass(frozen=True)
class Exercise:
    name: str
    assignment: str  # nbgrader assignment id (a folder of solutions/ and assignments/)
    notebook: str  # notebook file name inside the assignment folder
    signature: str  # the def line's parameter list, exactly as the reference declares it
    summary: str  # one line, used as the feedback heading's subtitle
    tests: Mapping[str, int]  # hidden test function name -> points (order = report order)
    forbidden: tuple[Forbidden, ...]
    public_cases: tuple[PublicCase, ...]
    call: Convention  # how the grader calls the function (autograder/course/conventions.py)
    also: tuple[Convention, ...] = ()  # other ways the hidden suite calls it (e.g. a training loop)
    tolerances: Mapping[str, Tolerance] = field(default_factory=lambda: DEFAULT_TOLERANCES)
    timeout_s: float = 20.0  # wall-clock budget of one worker call for this exercise

    @property
    def points(self) -> int:
        return sum(self.tests.values())

    @property
    def notebook_path(self) -> str:
        return f"{self.assignment}/{self.notebook}"

    def parameters(self) -> list[str]:
        """The parameter names of the signature, in order."""
        return [part.split("=")[0].strip() for part in self.signature.split(",")]

    def convention(self, how: str | None = None) -> Convention:
        """``call``, or the convention of ``also`` whose harness is ``how``."""
        if how is None:
            return self.call
        for convention in (self.call, *self.also):
            if convention.harness == how:
                return convention
        raise KeyError(f"{self.name} is not called through {how!r}")

    def tolerance(self, dtype: Any) -> Tolerance:
        """This exercise's tolerance for ``dtype``; the defaults for a dtype it does not declare."""
        key = str(dtype).removeprefix("torch.")
        return self.tolerances[key] if key in self.tolerances else default_tolerance(key)


def _tests(**points: int) -> Mapping[str, int]:
    return MappingProxyType({f"test_{name}": value for name, value in points.items()})


_F = Forbidden

#: The routines that compute a convolution (forbidden wherever the exercise is to write one).
_CONVOLUTIONS: tuple[Forbidden, ...] = (
    _F(
        "torch.nn.functional.conv2d",
        (
            "torch.nn.functional.conv1d",
            "torch.nn.functional.conv3d",
            "torch.nn.functional.conv_transpose1d",
            "torch.nn.functional.conv_transpose2d",
            "torch.nn.functional.conv_transpose3d",
            "torch.conv1d",
            "torch.conv3d",
            "torch.conv_transpose1d",
            "torch.conv_transpose2d",
            "torch.conv_transpose3d",
            "torch.nn.Conv1d",
            "torch.nn.Conv3d",
            "torch.nn.ConvTranspose1d",
            "torch.nn.ConvTranspose2d",
            "torch.nn.ConvTranspose3d",
            "torch.nn.LazyConv1d",
            "torch.nn.LazyConv3d",
            "torch.nn.LazyConvTranspose1d",
            "torch.nn.LazyConvTranspose2d",
            "torch.nn.LazyConvTranspose3d",
        ),
        ("aten.conv1d", "aten.conv3d", "aten.conv_transpose"),
    ),
    _F("torch.conv2d", ("torch._C._VariableFunctions.conv2d",), ("aten.conv2d",)),
    _F("torch.nn.Conv2d", ("torch.nn.LazyConv2d",)),
    _F(
        "torch.convolution",
        (
            "torch._convolution",
            "torch._convolution_mode",
            "torch._C._VariableFunctions.convolution",
            "torch.conv_tbc",
            "torch.mkldnn_convolution",
            "torch.cudnn_convolution",
            "torch.cudnn_convolution_transpose",
            "torch.miopen_convolution",
        ),
        (
            "aten.convolution",
            "aten._convolution",
            "aten.conv_tbc",
            "aten.conv_depthwise",
            "aten._conv_depthwise",
            "aten.mkldnn_convolution",
            "aten.cudnn_convolution",
            "aten.miopen_convolution",
            "aten.miopen_depthwise_convolution",
            "aten.slow_conv",
            "aten._slow_conv",
            "aten.thnn_conv",
            "aten._nnpack_spatial_convolution",
            "aten.mps_convolution",
        ),
    ),
)

#: The optimizers' library routines (docs/exercises.md §17-19 forbid the same three in each).
_OPTIMIZERS_FORBIDDEN = (
    _F(
        "torch.optim.SGD",
        ("torch.optim.sgd.SGD", "torch.optim.sgd.sgd", "torch.optim._functional.sgd", "torch.optim.sgd._single_tensor_sgd",
         "torch.optim.sgd._multi_tensor_sgd", "torch.optim.sgd._fused_sgd"),
    ),
    _F(
        "torch.optim.Adagrad",
        ("torch.optim.adagrad.Adagrad", "torch.optim.adagrad.adagrad", "torch.optim._functional.adagrad",
         "torch.optim.adagrad._single_tensor_adagrad", "torch.optim.adagrad._multi_tensor_adagrad",
         "torch.optim.adagrad._fused_adagrad"),
    ),
    _F(
        "torch.optim.RMSprop",
        ("torch.optim.rmsprop.RMSprop", "torch.optim.rmsprop.rmsprop", "torch.optim._functional.rmsprop",
         "torch.optim.rmsprop._single_tensor_rmsprop", "torch.optim.rmsprop._multi_tensor_rmsprop"),
    ),
    # the fused kernels, reachable without torch.optim
    _F("torch._fused_sgd_", ("torch._C._VariableFunctions._fused_sgd_",), ("aten._fused_sgd",)),
    _F("torch._fused_adagrad_", ("torch._C._VariableFunctions._fused_adagrad_",), ("aten._fused_adagrad",)),
)

EXERCISES: tuple[Exercise, ...] = (
    Exercise(
        name="softmax",
        assignment="01_linear_models",
        notebook="linear_models.ipynb",
        signature="X",
        summary="numerically stable softmax over the last dimension",
        tests=_tests(values=2, gradient=2, stability=2, batch_dims=1, float32=1, device=1, no_mutation=1),
        forbidden=(
            _F(
                "torch.softmax",
                (
                    "torch._C._VariableFunctions.softmax",
                    "torch._softmax",
                    "torch._safe_softmax",
                    "torch._masked_softmax",
                    "torch.nn.functional.softmin",  # softmin(-X) is softmax(X): the same kernel
                    "torch.nn.Softmin",
                ),
                ("aten._softmax", "aten.softmax", "aten._safe_softmax", "aten._masked_softmax"),
            ),
            _F("torch.nn.functional.softmax"),
            _F("Tensor.softmax", ("torch.Tensor.softmax", "torch._C.TensorBase.softmax", ".softmax")),
            _F("torch.special.softmax", ("torch._C._special.special_softmax",)),
            _F("torch.nn.Softmax", ("torch.nn.Softmax2d",)),
            _F(
                "torch.log_softmax",
                (
                    "torch.nn.functional.log_softmax",
                    "torch.special.log_softmax",
                    "torch.Tensor.log_softmax",
                    "torch._C.TensorBase.log_softmax",
                    ".log_softmax",
                    "torch.nn.LogSoftmax",
                    "torch._C._special.special_log_softmax",
                    "torch._log_softmax",
                    "torch._C._VariableFunctions.log_softmax",
                ),
                ("aten._log_softmax", "aten.log_softmax"),
            ),
        ),
        call=Function(grad_wrt=("X",)),
        public_cases=(
            PublicCase("rows sum to one", {"X": [[1.0, 2.0, 3.0]]}, [[0.09003057317038046, 0.24472847105479764, 0.6652409557748219]], hint=hints.SOFTMAX_VALUES),
            PublicCase("large equal scores", {"X": [[1000.0, 1000.0]]}, [[0.5, 0.5]], hint=hints.SOFTMAX_STABLE),
            PublicCase("large gap", {"X": [[-1000.0, 0.0]]}, [[0.0, 1.0]], hint=hints.SOFTMAX_STABLE),
            PublicCase("each row on its own (over the last dimension)", {"X": [[1.0, 2.0], [3.0, 5.0]]},
                       [[0.26894142136999516, 0.7310585786300049], [0.11920292202211755, 0.8807970779778823]], hint=hints.SOFTMAX_BATCH),
        ),
    ),
    Exercise(
        name="cross_entropy",
        assignment="01_linear_models",
        notebook="linear_models.ipynb",
        signature="y_hat, y",
        summary="per-example cross-entropy loss from predicted probabilities",
        tests=_tests(values=2, gradient=3, per_example=1, float32=1, small_probabilities=1, device=1, no_mutation=1),
        forbidden=(
            _F("torch.nn.functional.cross_entropy", ("torch._C._nn.cross_entropy_loss",), ("aten.cross_entropy_loss",)),
            _F("torch.nn.functional.nll_loss", ("torch._C._nn.nll_loss", "torch._C._nn.nll_loss_nd", "torch._C._nn.nll_loss2d"), ("aten.nll_loss",)),
            _F("torch.nn.CrossEntropyLoss"),
            _F("torch.nn.NLLLoss"),
        ),
        call=Function(grad_wrt=("y_hat",)),
        public_cases=(
            PublicCase(
                "d2l example",
                {"y_hat": [[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]], "y": [0, 2]},
                [2.3025850929940455, 0.6931471805599453],
                dtypes={"y": "int64"}, hint=hints.CROSS_ENTROPY_VALUES,
            ),
        ),
    ),
    Exercise(
        name="dropout",
        assignment="02_mlp",
        notebook="mlp.ipynb",
        signature="X, drop_prob",
        summary="inverted dropout in training mode",
        tests=_tests(drop_rate=2, rescaling=2, gradient_mask=1, fresh_masks=1, edge_probabilities=1, no_mutation=1,
                     invalid_p=1, device=1),
        forbidden=(
            _F(
                "torch.nn.functional.dropout",
                (
                    "torch.nn.functional.dropout1d",
                    "torch.nn.functional.dropout2d",
                    "torch.nn.functional.dropout3d",
                    "torch.nn.functional.alpha_dropout",
                    "torch.nn.functional.feature_alpha_dropout",
                    "torch.alpha_dropout",
                    "torch.alpha_dropout_",
                    "torch.feature_alpha_dropout",
                    "torch.feature_alpha_dropout_",
                    "torch.feature_dropout",
                    "torch.feature_dropout_",
                    "torch.native_dropout",
                ),
                ("aten.native_dropout", "aten._fused_dropout", "aten.alpha_dropout", "aten.feature_alpha_dropout", "aten.feature_dropout"),
            ),
            _F("torch.dropout", ("torch._C._VariableFunctions.dropout", "torch.dropout_"), ("aten.dropout",)),
            _F(
                "torch.nn.Dropout",
                ("torch.nn.Dropout1d", "torch.nn.Dropout2d", "torch.nn.Dropout3d", "torch.nn.AlphaDropout", "torch.nn.FeatureAlphaDropout"),
            ),
        ),
        call=Function(grad_wrt=("X",)),
        public_cases=(
            PublicCase("drop_prob = 0 keeps X", {"X": [[1.0, -2.0], [3.0, 4.0]], "drop_prob": 0.0}, [[1.0, -2.0], [3.0, 4.0]], hint=hints.DROPOUT_EDGE_ZERO),
            PublicCase("drop_prob = 1 gives zeros", {"X": [[1.0, -2.0], [3.0, 4.0]], "drop_prob": 1.0}, [[0.0, 0.0], [0.0, 0.0]], hint=hints.DROPOUT_EDGE_ONE),
        ),
    ),
    Exercise(
        name="corr2d",
        assignment="03_cnn",
        notebook="cnn.ipynb",
        signature="X, K",
        summary="2-D cross-correlation (the kernel is not flipped)",
        tests=_tests(values=2, gradient_X=2, gradient_K=1, not_flipped=1, shapes=1, float32=1, device=1, no_mutation=1),
        forbidden=_CONVOLUTIONS,
        call=Function(grad_wrt=("X", "K")),
        public_cases=(
            PublicCase("d2l example", {"X": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]], "K": [[0.0, 1.0], [2.0, 3.0]]}, [[19.0, 25.0], [37.0, 43.0]], hint=hints.CORR2D_VALUES),
            PublicCase("horizontal edge kernel", {"X": [[1.0, 1.0, 0.0, 0.0]], "K": [[1.0, -1.0]]}, [[0.0, 1.0, 0.0]], hint=hints.CORR2D_VALUES),
        ),
    ),
    Exercise(
        name="clip_grad",
        assignment="04_rnn",
        notebook="rnn.ipynb",
        signature="params, theta",
        summary="gradient clipping by global L2 norm, in place",
        tests=_tests(clips_large=2, leaves_small=2, returns_norm=1, skips_none=1, in_place=1, generator=1, trajectory=1, device=1),
        forbidden=(
            _F("torch.nn.utils.clip_grad_norm_", ("torch.nn.utils.clip_grad.clip_grad_norm_",)),
            _F("torch.nn.utils.clip_grad_norm", ("torch.nn.utils.clip_grad.clip_grad_norm",)),
            _F("torch.nn.utils.clip_grad_value_", ("torch.nn.utils.clip_grad.clip_grad_value_",)),
            _F("torch.nn.utils.get_total_norm", ("torch.nn.utils.clip_grad._get_total_norm",)),
            _F("torch.nn.utils.clip_grads_with_norm_", ("torch.nn.utils.clip_grad._clip_grads_with_norm_",)),
        ),
        call=GradsInPlace(params="params", returns="norm", returns_what="norm (before clipping)"),
        public_cases=(
            PublicCase("norm 5 clipped to 1", {"grads": [[3.0, 4.0]], "theta": 1.0}, {"norm": 5.0, "grads": [[0.6, 0.8]]}, hint=hints.CLIP_GRAD_CLIP),
            PublicCase("norm 5 below 10 is untouched", {"grads": [[3.0, 4.0]], "theta": 10.0}, {"norm": 5.0, "grads": [[3.0, 4.0]]}, hint=hints.CLIP_GRAD_SMALL),
            PublicCase("one global norm over all parameters", {"grads": [[3.0], [4.0]], "theta": 1.0},
                       {"norm": 5.0, "grads": [[0.6], [0.8]]}, hint=hints.CLIP_GRAD_PER_TENSOR),
        ),
    ),
    Exercise(
        name="adam_step",
        assignment="05_optimization",
        notebook="optimization.ipynb",
        signature="params, states, lr, t, beta1=0.9, beta2=0.999, eps=1e-8",
        summary="one Adam update, in place, with bias correction",
        tests=_tests(single_step=2, trajectory=2, bias_correction=1, eps_outside_sqrt=1, tiny_gradients=1, in_place_no_history=2, device=1),
        forbidden=(
            _F("torch.optim.Adam", ("torch.optim.adam.Adam",)),
            _F("torch.optim.AdamW", ("torch.optim.adamw.AdamW", "torch.optim.adamw.adamw", "torch.optim._functional.adamw")),
            _F("torch.optim._functional.adam", ("torch.optim.adam.adam", "torch.optim.adam._single_tensor_adam", "torch.optim.adam._multi_tensor_adam", "torch.optim.adam._fused_adam")),
            _F("torch._fused_adam_", ("torch._fused_adamw_",), ("aten._fused_adam", "aten._fused_adamw")),
        ),
        call=OptimizerState(state_layout=("v", "s"), states="states", step="t"),
        public_cases=(
            PublicCase(
                "first step moves each entry by about lr",
                {"params": [[1.0, -2.0]], "grads": [[0.5, -3.0]], "lr": 0.1, "t": 1},
                {"params": [[0.900000002, -1.9000000003333333]]}, hint=hints.ADAM_STEP_UPDATE,
            ),
            PublicCase(
                "eps is added after the square root (here eps = 1)",
                {"params": [[1.0]], "grads": [[0.25]], "lr": 0.1, "t": 1, "eps": 1.0},
                {"params": [[0.98]]}, hint=hints.ADAM_STEP_EPS,
            ),
        ),
    ),
    Exercise(
        name="self_attention",
        assignment="06_attention",
        notebook="attention.ipynb",
        signature="X, W_q, W_k, W_v, mask=None",
        summary="scaled dot-product self-attention with an optional boolean mask",
        tests=_tests(values=2, gradients=1, causal_mask=2, padding_mask=1, stability=1, shapes=1, device=1, no_mutation=1),
        tolerances=MappingProxyType({"float32": Tolerance(rtol=1e-5, atol=1e-5), "float64": Tolerance(rtol=1e-7, atol=1e-7)}),
        forbidden=(
            _F(
                "torch.nn.functional.scaled_dot_product_attention",
                (
                    "torch._C._nn.scaled_dot_product_attention",
                    "torch._scaled_dot_product_attention_math",
                    "torch._scaled_dot_product_flash_attention",
                    "torch._scaled_dot_product_efficient_attention",
                    "torch._fused_sdp_choice",
                    "torch.nn.attention.flex_attention.flex_attention",
                ),
                (
                    "aten.scaled_dot_product_attention",
                    "aten._scaled_dot_product",
                    "aten._flash_attention",
                    "aten._efficient_attention",
                    "aten._cudnn_attention",
                    "aten._fused_sdp_choice",
                ),
            ),
            _F("torch.nn.MultiheadAttention", ("torch.nn.TransformerEncoderLayer", "torch.nn.TransformerDecoderLayer", "torch.nn.Transformer")),
            _F(
                "torch.nn.functional.multi_head_attention_forward",
                ("torch._native_multi_head_attention", "torch._transformer_encoder_layer_fwd"),
                ("aten._native_multi_head_attention", "aten._transformer_encoder_layer_fwd"),
            ),
        ),
        call=Function(grad_wrt=("X", "W_q", "W_k", "W_v")),
        public_cases=(
            PublicCase(
                "identity projections, one query",
                {"X": [[[1.0, 0.0], [0.0, 1.0]]], "W_q": [[1.0, 0.0], [0.0, 1.0]], "W_k": [[1.0, 0.0], [0.0, 1.0]], "W_v": [[1.0, 0.0], [0.0, 1.0]], "mask": [[True, False], [True, True]]},
                [[[1.0, 0.0], [0.330238450673343, 0.669761549326657]]],
                dtypes={"mask": "bool"}, hint=hints.SELF_ATTENTION_VALUES,
            ),
        ),
    ),
    Exercise(
        name="q_learning_update",
        assignment="07_rl",
        notebook="rl.ipynb",
        signature="Q, s, a, r, s_next, done, alpha, gamma",
        summary="one tabular Q-learning update, in place, returning the TD error",
        tests=_tests(update=2, terminal=2, td_error=1, only_entry_changes=1, in_place=1, training=3),
        forbidden=(),
        call=TableUpdate(table="Q", returns="td_error", returns_what="TD error"),
        also=(EpisodeLoop(table="Q"),),
        public_cases=(
            PublicCase(
                "non-terminal step",
                {"Q": [[0.0, 0.0], [1.0, 2.0]], "s": 0, "a": 1, "r": 1.0, "s_next": 1, "done": False, "alpha": 0.5, "gamma": 0.9},
                {"td_error": 2.8, "Q": [[0.0, 1.4], [1.0, 2.0]]}, hint=hints.Q_LEARNING_UPDATE_UPDATE,
            ),
            PublicCase(
                "terminal step ignores the next state",
                {"Q": [[0.0, 0.0], [1.0, 2.0]], "s": 0, "a": 0, "r": 1.0, "s_next": 1, "done": True, "alpha": 0.5, "gamma": 0.9},
                {"td_error": 1.0, "Q": [[0.5, 0.0], [1.0, 2.0]]}, hint=hints.Q_LEARNING_UPDATE_TERMINAL,
            ),
        ),
    ),
    Exercise(
        name="layer_norm",
        assignment="14_transformer",
        notebook="transformer.ipynb",
        signature="X, gamma, beta, eps=1e-5",
        summary="layer normalisation over the last dimension, biased variance",
        tests=_tests(values=2, gradients=2, last_dimension=1, biased_variance=1, eps=1, shapes=1, device=1, no_mutation=1),
        forbidden=(
            _F("torch.nn.functional.layer_norm", (), ("aten.layer_norm", "aten.native_layer_norm")),
            _F("torch.layer_norm", ("torch._C._VariableFunctions.layer_norm",)),
            _F("torch.nn.LayerNorm"),
            _F(
                "torch.nn.functional.group_norm",
                ("torch.group_norm", "torch.native_group_norm", "torch.nn.GroupNorm"),
                ("aten.group_norm", "aten.native_group_norm"),
            ),
            _F("torch.native_layer_norm", ("torch._C._VariableFunctions.native_layer_norm",)),
            _F("torch.nn.functional.rms_norm", ("torch.rms_norm", "torch.nn.RMSNorm", "torch._fused_rms_norm"), ("aten.rms_norm", "aten._fused_rms_norm")),
        ),
        call=Function(grad_wrt=("X", "gamma", "beta")),
        public_cases=(
            PublicCase(
                "each row normalised on its own",
                {"X": [[1.0, 2.0, 3.0, 4.0], [-1.0, 0.0, 0.0, 5.0]], "gamma": [1.0, 1.0, 1.0, 1.0], "beta": [0.0, 0.0, 0.0, 0.0]},
                [[-1.3416354199689269, -0.447211806656309, 0.447211806656309, 1.3416354199689269],
                 [-0.8528020901481668, -0.4264010450740834, -0.4264010450740834, 1.7056041802963335]],
            ),
            PublicCase(
                "biased variance, eps inside the root, gamma and beta",
                {"X": [[1.0, 3.0], [10.0, 10.004]], "gamma": [2.0, 0.5], "beta": [0.0, 1.0]},
                [[-1.9999900000749995, 1.49999750001875], [-1.0690449676491387, 1.267261241912522]],
            ),
        ),
    ),
    Exercise(
        name="multi_head_attention",
        assignment="14_transformer",
        notebook="transformer.ipynb",
        signature="X, W_q, W_k, W_v, W_o, num_heads, mask=None",
        summary="multi-head scaled dot-product self-attention with an output projection",
        tests=_tests(values=2, gradients=2, heads=2, masks=2, device=1, no_mutation=1),
        tolerances=MappingProxyType({"float32": Tolerance(rtol=1e-5, atol=1e-5), "float64": Tolerance(rtol=1e-7, atol=1e-7)}),
        forbidden=(
            _F(
                "torch.nn.functional.scaled_dot_product_attention",
                (
                    "torch._C._nn.scaled_dot_product_attention",
                    "torch._scaled_dot_product_attention_math",
                    "torch._scaled_dot_product_flash_attention",
                    "torch._scaled_dot_product_efficient_attention",
                    "torch._fused_sdp_choice",
                    "torch.nn.attention.flex_attention.flex_attention",
                ),
                (
                    "aten.scaled_dot_product_attention",
                    "aten._scaled_dot_product",
                    "aten._flash_attention",
                    "aten._efficient_attention",
                    "aten._cudnn_attention",
                    "aten._fused_sdp_choice",
                ),
            ),
            _F("torch.nn.MultiheadAttention", ("torch.nn.TransformerEncoderLayer", "torch.nn.TransformerDecoderLayer", "torch.nn.Transformer", "torch.nn.TransformerEncoder", "torch.nn.TransformerDecoder")),
            _F(
                "torch.nn.functional.multi_head_attention_forward",
                ("torch._native_multi_head_attention", "torch._transformer_encoder_layer_fwd"),
                ("aten._native_multi_head_attention", "aten._transformer_encoder_layer_fwd"),
            ),
        ),
        call=Function(grad_wrt=("X", "W_q", "W_k", "W_v", "W_o")),
        public_cases=(
            PublicCase(
                "two heads of width 2, then W_o",
                {"X": [[[1.0, 0.0, 1.0, 0.0], [0.0, 2.0, 0.0, 1.0]]],
                 "W_q": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
                 "W_k": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
                 "W_v": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
                 "W_o": [[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]],
                 "num_heads": 2},
                [[[0.6697615493266569, 1.3209538026933725, 0.19557031749304313, 0.8044296825069569],
                  [0.055807219207169745, 3.7767711231713212, 0.6697615493266569, 0.3302384506733431]]],
            ),
            PublicCase(
                "a causal mask, the same for every head",
                {"X": [[[1.0, 0.0, 1.0, 0.0], [0.0, 2.0, 0.0, 1.0]]],
                 "W_q": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
                 "W_k": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
                 "W_v": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
                 "W_o": [[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]],
                 "num_heads": 2, "mask": [[True, False], [True, True]]},
                [[[1.0, 0.0, 0.0, 1.0],
                  [0.055807219207169745, 3.7767711231713212, 0.6697615493266569, 0.3302384506733431]]],
                dtypes={"mask": "bool"},
            ),
            PublicCase(
                "a different mask per example, broadcast over the heads",
                {"X": [[[1.0, 0.0, 1.0, 0.0], [0.0, 2.0, 0.0, 1.0]], [[1.0, 0.0, 1.0, 0.0], [0.0, 2.0, 0.0, 1.0]]],
                 "W_q": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
                 "W_k": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
                 "W_v": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
                 "W_o": [[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]],
                 "num_heads": 2, "mask": [[[True, False], [True, True]], [[True, True], [False, True]]]},
                [[[1.0, 0.0, 0.0, 1.0],
                  [0.055807219207169745, 3.7767711231713212, 0.6697615493266569, 0.3302384506733431]],
                 [[0.6697615493266569, 1.3209538026933725, 0.19557031749304313, 0.8044296825069569],
                  [0.0, 4.0, 1.0, 0.0]]],
                dtypes={"mask": "bool"},
            ),
        ),
    ),
    Exercise(
        name="sarsa_update",
        assignment="15_planning",
        notebook="planning.ipynb",
        signature="Q, s, a, r, s_next, a_next, done, alpha, gamma",
        summary="one tabular SARSA update, in place, returning the TD error",
        timeout_s=60.0,  # the training run: about 12 600 updates on CliffWalking
        tests=_tests(update=2, terminal=2, td_error=1, only_entry_changes=1, in_place=1, training=3),
        forbidden=(),
        call=TableUpdate(table="Q", returns="td_error", returns_what="TD error"),
        also=(EpisodeLoop(table="Q", next_action="a_next"),),
        public_cases=(
            PublicCase(
                "bootstraps from the action taken next, not the best one",
                {"Q": [[0.0, 0.0], [1.0, 2.0]], "s": 0, "a": 1, "r": 1.0, "s_next": 1, "a_next": 0, "done": False, "alpha": 0.5, "gamma": 0.9},
                {"td_error": 1.9, "Q": [[0.0, 0.95], [1.0, 2.0]]},
            ),
            PublicCase(
                "terminal step ignores the next state",
                {"Q": [[0.0, 0.0], [1.0, 2.0]], "s": 0, "a": 0, "r": 1.0, "s_next": 1, "a_next": 1, "done": True, "alpha": 0.5, "gamma": 0.9},
                {"td_error": 1.0, "Q": [[0.5, 0.0], [1.0, 2.0]]},
            ),
        ),
    ),
    Exercise(
        name="value_iteration",
        assignment="15_planning",
        notebook="planning.ipynb",
        signature="P, R, gamma, tol=1e-8",
        summary="value iteration on a finite MDP: optimal values and a greedy policy",
        tests=_tests(values=2, policy=2, ties=1, stopping=1, frozen_lake=2, device=1, no_mutation=1),
        tolerances=MappingProxyType({"float32": Tolerance(rtol=1e-5, atol=1e-4), "float64": Tolerance(rtol=1e-7, atol=1e-6)}),
        forbidden=(),
        call=Function(outputs=("V", "policy")),
        public_cases=(
            PublicCase(
                "two states: moving on to the better state pays",
                {"P": [[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]], "R": [[1.0, 0.0], [2.0, 0.0]], "gamma": 0.9},
                {"V": [18.0, 20.0], "policy": [1, 0]},
                dtypes={"policy": "int64"},
            ),
            PublicCase(
                "ties go to the lowest action index",
                {"P": [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]],
                       [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]],
                       [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]],
                 "R": [[0.0, 1.0, 0.0, 1.0], [5.0, 5.0, 3.0, 5.0], [0.0, 0.0, 0.0, 0.0]], "gamma": 0.5},
                {"V": [3.5, 5.0, 0.0], "policy": [1, 0, 0]},
                dtypes={"policy": "int64"},
            ),
            PublicCase(
                "gamma = 0.99 needs about 2 000 sweeps",
                {"P": [[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]], "R": [[1.0, 0.0], [2.0, 0.0]], "gamma": 0.99},
                {"V": [198.0, 200.0], "policy": [1, 0]},
                dtypes={"policy": "int64"},
            ),
        ),
    ),
    Exercise(
        name="bce_with_logits",
        assignment="12_logistic_regression",
        notebook="logistic_regression.ipynb",
        signature="z, y",
        summary="per-element binary cross-entropy of logits, stable for |z| up to 1e4",
        tests=_tests(values=2, gradient=2, large_logits=2, per_element=1, float32=1, device=1, no_mutation=1),
        forbidden=(
            _F(
                "torch.nn.functional.binary_cross_entropy_with_logits",
                ("torch.binary_cross_entropy_with_logits", "torch._C._VariableFunctions.binary_cross_entropy_with_logits"),
                ("aten.binary_cross_entropy_with_logits",),
            ),
            _F("torch.nn.functional.binary_cross_entropy", ("torch._C._nn.binary_cross_entropy",), ("aten.binary_cross_entropy",)),
            _F("torch.nn.BCEWithLogitsLoss", ("torch.nn.modules.loss.BCEWithLogitsLoss",)),
            _F("torch.nn.BCELoss", ("torch.nn.modules.loss.BCELoss",)),
            _F("torch.nn.functional.softplus", ("torch._C._nn.softplus",), ("aten.softplus",)),
            _F("torch.nn.functional.logsigmoid", ("torch._C._nn.log_sigmoid",), ("aten.log_sigmoid",)),
            _F("torch.nn.Softplus", ("torch.nn.modules.activation.Softplus",)),
            _F("torch.nn.LogSigmoid", ("torch.nn.modules.activation.LogSigmoid",)),
        ),
        call=Function(grad_wrt=("z",)),
        public_cases=(
            PublicCase("z = 0 costs log 2 whatever the target", {"z": [0.0, 0.0, 0.0], "y": [0.0, 0.5, 1.0]},
                       [0.6931471805599453, 0.6931471805599453, 0.6931471805599453]),
            PublicCase("large logits are exact, no nan or inf", {"z": [1e4, -1e4, 1e4, -1e4, 1e4], "y": [0.0, 1.0, 1.0, 0.0, 0.25]},
                       [1e4, 1e4, 0.0, 0.0, 7500.0]),
            PublicCase("one loss per element, not the mean", {"z": [[1.0, -2.0], [3.0, 0.5]], "y": [[1.0, 0.0], [0.25, 1.0]]},
                       [[0.31326168751822286, 0.1269280110429725], [2.298587351573742, 0.4740769841801067]]),
        ),
    ),
    Exercise(
        name="sgd_momentum_step",
        assignment="13_optimizers",
        notebook="optimizers.ipynb",
        signature="params, velocities, lr, momentum",
        summary="one step of SGD with momentum (torch.optim.SGD), in place",
        tests=_tests(single_step=2, trajectory=2, velocity=1, tiny_gradients=1, huge_gradients=1, in_place_no_history=2, device=1),
        forbidden=_OPTIMIZERS_FORBIDDEN,
        call=OptimizerState(state_layout="v", states="velocities"),
        public_cases=(
            PublicCase("first step: v = g, p -= lr v", {"params": [[1.0, -2.0]], "steps": [[[0.5, -3.0]]], "lr": 0.1, "momentum": 0.9},
                       {"params": [[0.95, -1.7]], "states": [[0.5, -3.0]]}),
            PublicCase("second step: v = momentum v + g",
                       {"params": [[1.0, -2.0]], "steps": [[[0.5, -3.0]], [[1.0, 1.0]]], "lr": 0.1, "momentum": 0.9},
                       {"params": [[0.805, -1.53]], "states": [[1.45, -1.7]]}),
        ),
    ),
    Exercise(
        name="adagrad_step",
        assignment="13_optimizers",
        notebook="optimizers.ipynb",
        signature="params, states, lr, eps=1e-10",
        summary="one Adagrad step (torch.optim.Adagrad), in place",
        tests=_tests(single_step=2, trajectory=2, eps_outside_sqrt=1, tiny_gradients=1, huge_gradients=1, in_place_no_history=2, device=1),
        forbidden=_OPTIMIZERS_FORBIDDEN,
        call=OptimizerState(state_layout="s", states="states"),
        public_cases=(
            PublicCase("first step moves each entry by about lr", {"params": [[1.0, -2.0]], "steps": [[[0.5, -3.0]]], "lr": 0.1},
                       {"params": [[0.90000000002, -1.9000000000033332]], "states": [[0.25, 9.0]]}),
            PublicCase("the sum of squares keeps growing",
                       {"params": [[1.0, -2.0]], "steps": [[[0.5, -3.0]], [[0.5, 4.0]]], "lr": 0.1},
                       {"params": [[0.8292893219113453, -1.9800000000017333]], "states": [[0.5, 25.0]]}),
            PublicCase("eps is added after the square root", {"params": [[1.0]], "steps": [[[0.25]]], "lr": 0.1, "eps": 1.0},
                       {"params": [[0.98]], "states": [[0.0625]]}),
        ),
    ),
    Exercise(
        name="rmsprop_step",
        assignment="13_optimizers",
        notebook="optimizers.ipynb",
        signature="params, states, lr, alpha=0.99, eps=1e-8",
        summary="one RMSProp step (torch.optim.RMSprop), in place",
        tests=_tests(single_step=2, trajectory=2, eps_outside_sqrt=1, tiny_gradients=1, huge_gradients=1, in_place_no_history=2, device=1),
        forbidden=_OPTIMIZERS_FORBIDDEN,
        call=OptimizerState(state_layout="s", states="states"),
        public_cases=(
            PublicCase("first step: s = (1 - alpha) g^2", {"params": [[1.0, -2.0]], "steps": [[[0.5, -3.0]]], "lr": 0.01, "alpha": 0.9},
                       {"params": [[0.968377225398316, -1.9683772237316495]], "states": [[0.025, 0.9]]}),
            PublicCase("second step: s = alpha s + (1 - alpha) g^2",
                       {"params": [[1.0, -2.0]], "steps": [[[0.5, -3.0]], [[0.5, 4.0]]], "lr": 0.01, "alpha": 0.9},
                       {"params": [[0.9454356530638914, -1.9941434886217075]], "states": [[0.0475, 2.41]]}),
            PublicCase("eps is added after the square root", {"params": [[1.0]], "steps": [[[2.0]]], "lr": 0.1, "alpha": 0.75, "eps": 1.0},
                       {"params": [[0.9]], "states": [[1.0]]}),
        ),
    ),
)


# The routines of torch's own recurrent layers, forbidden in both gated cells (docs/exercises.md §13-14).
_RNN_ROUTINES = ("gru", "lstm", "gru_cell", "lstm_cell", "rnn_tanh", "rnn_relu", "rnn_tanh_cell", "rnn_relu_cell")
_FORBIDDEN_RNN = (
    _F("torch.nn.GRU", ("torch.nn.modules.rnn.GRU",)),
    _F("torch.nn.GRUCell", ("torch.nn.modules.rnn.GRUCell",)),
    _F("torch.nn.LSTM", ("torch.nn.modules.rnn.LSTM",)),
    _F("torch.nn.LSTMCell", ("torch.nn.modules.rnn.LSTMCell",)),
    _F("torch.nn.RNN", ("torch.nn.RNNCell", "torch.nn.RNNBase", "torch.nn.RNNCellBase", "torch.nn.modules.rnn.RNN",
                        "torch.nn.modules.rnn.RNNCell", "torch.nn.modules.rnn.RNNBase", "torch.nn.modules.rnn.RNNCellBase")),
    _F("torch.gru_cell", ("torch._C._VariableFunctions.gru_cell", "torch.quantized_gru_cell",
                          "torch._C._VariableFunctions.quantized_gru_cell"),
       ("aten.gru_cell", "aten._thnn_fused_gru_cell", "aten.quantized_gru_cell")),
    _F("torch.lstm_cell", ("torch._C._VariableFunctions.lstm_cell", "torch.quantized_lstm_cell",
                           "torch._C._VariableFunctions.quantized_lstm_cell"),
       ("aten.lstm_cell", "aten._thnn_fused_lstm_cell", "aten.quantized_lstm_cell")),
    _F("torch._VF", tuple(f"torch._VF.{name}" for name in _RNN_ROUTINES)),
    _F("torch.gru", ("torch.lstm", "torch.rnn_tanh", "torch.rnn_relu", "torch.rnn_tanh_cell", "torch.rnn_relu_cell",
                     "torch.quantized_gru", "torch.quantized_lstm", "torch._lstm_mps",
                     *(f"torch._C._VariableFunctions.{name}" for name in ("gru", "lstm", "rnn_tanh", "rnn_relu",
                                                                         "rnn_tanh_cell", "rnn_relu_cell"))),
       ("aten.gru", "aten.lstm", "aten.rnn_tanh", "aten.rnn_relu", "aten._cudnn_rnn", "aten.miopen_rnn",
        "aten.mkldnn_rnn", "aten._lstm_mps", "aten.quantized_gru", "aten.quantized_lstm")),
)

#: A public case's two-unit GRU and LSTM: small weights written out, different for every gate, so
#: that swapped gates, a sigmoid candidate or a misplaced reset gate change the result.
_GRU_PARAMS = {
    "W_xz": [[0.5, 0.0], [0.0, -0.5]], "W_hz": [[1.0, 0.0], [0.0, 1.0]], "b_z": [0.0, 0.5],
    "W_xr": [[-1.0, 0.5], [0.0, 0.5]], "W_hr": [[0.0, 1.0], [1.0, 0.0]], "b_r": [0.5, 0.0],
    "W_xh": [[1.0, -1.0], [0.5, 0.5]], "W_hh": [[0.5, 1.0], [-1.0, 0.5]], "b_h": [0.0, -0.5],
}
_LSTM_PARAMS = {
    "W_xi": [[0.5, 0.0], [0.0, -0.5]], "W_hi": [[1.0, 0.0], [0.0, 1.0]], "b_i": [0.0, 0.5],
    "W_xf": [[-1.0, 0.5], [0.0, 0.5]], "W_hf": [[0.0, 1.0], [1.0, 0.0]], "b_f": [1.0, 0.0],
    "W_xo": [[0.5, 0.5], [-0.5, 0.0]], "W_ho": [[0.0, -1.0], [0.5, 0.0]], "b_o": [0.0, 0.0],
    "W_xc": [[1.0, -1.0], [0.5, 0.5]], "W_hc": [[0.5, 1.0], [-1.0, 0.5]], "b_c": [0.0, -0.5],
}


def _zeros_like(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: [[0.0] * len(v[0]) for _ in v] if isinstance(v[0], list) else [0.0] * len(v) for k, v in params.items()}


EXERCISES += (
    Exercise(
        name="gru_cell",
        assignment="10_gated_rnn",
        notebook="gated_rnn.ipynb",
        signature="x, h, params",
        summary="one step of a gated recurrent unit (d2l's GRU)",
        tests=_tests(values=2, gradients=2, sequence_bptt=3, gates=1, shapes=1, float32=1, device=1, no_mutation=1),
        forbidden=_FORBIDDEN_RNN,
        call=Function(grad_wrt=("x", "h", "params")),
        also=(RecurrentCell(state="h"),),
        public_cases=(
            PublicCase("zero weights: z = r = 1/2 and h~ = 0, so h' = h / 2",
                       {"x": [[1.0, -1.0]], "h": [[0.5, -0.5]], "params": _zeros_like(_GRU_PARAMS)}, [[0.25, -0.25]]),
            PublicCase("two hidden units, every gate its own weights",
                       {"x": [[1.0, -1.0]], "h": [[0.5, -0.5]], "params": _GRU_PARAMS},
                       [[0.5553076702127844, -0.675741924785902]]),
        ),
        timeout_s=30.0,
    ),
    Exercise(
        name="lstm_cell",
        assignment="10_gated_rnn",
        notebook="gated_rnn.ipynb",
        signature="x, state, params",
        summary="one step of a long short-term memory cell, returning (h', c')",
        tests=_tests(values=2, gradients=2, sequence_bptt=3, gates=1, shapes=1, float32=1, device=1, no_mutation=1),
        forbidden=_FORBIDDEN_RNN,
        call=Function(grad_wrt=("x", "state", "params")),
        also=(RecurrentCell(state="state", tuple_state=True),),
        public_cases=(
            PublicCase("zero weights: every gate 1/2 and c~ = 0, so c' = c / 2 and h' = tanh(c') / 2",
                       {"x": [[1.0, -1.0]], "state": ([[0.5, -0.5]], [[1.0, -2.0]]), "params": _zeros_like(_LSTM_PARAMS)},
                       ([[0.23105857863000487, -0.3807970779778824]], [[0.5, -1.0]])),
            PublicCase("two hidden units, every gate its own weights",
                       {"x": [[1.0, -1.0]], "state": ([[0.5, -0.5]], [[1.0, -2.0]]), "params": _LSTM_PARAMS},
                       ([[0.5165972385785599, -0.47495637203903085]], [[0.9976857009005716, -1.8308866505065164]])),
        ),
        timeout_s=30.0,
    ),
    Exercise(
        name="replace_classifier",
        assignment="11_transfer_learning",
        notebook="transfer_learning.ipynb",
        signature="model, num_classes",
        summary="a frozen torchvision VGG with a new trainable last layer",
        tests=_tests(same_model=1, last_linear_replaced=2, frozen=2, untouched=2, forward_backward=2, other_vggs=1,
                     device=1),
        forbidden=(),
        call=ModuleTransform(model="model"),
        public_cases=(
            PublicCase("VGG-11 (weights=None, on the meta device) with 10 classes",
                       {"model": "vgg11", "num_classes": 10},
                       {"same_model": True, "last": [4096, 10], "trainable": 40970, "frozen": 128766336,
                        "output_shape": [2, 10]}),
        ),
        timeout_s=60.0,
    ),
    Exercise(
        name="conv2d",
        assignment="08_conv_layers",
        notebook="conv_layers.ipynb",
        signature="X, K, b=None, stride=1, padding=0",
        summary="multi-channel 2-D convolution layer (cross-correlation) with bias, stride and zero padding",
        tests=_tests(values=1, channels=1, gradient_X=1, gradient_K=1, gradient_b=1, stride_padding=2, edge_cases=1,
                     device=1, no_mutation=1),
        forbidden=_CONVOLUTIONS,
        call=Function(grad_wrt=("X", "K", "b")),
        public_cases=(
            PublicCase(
                "two input channels summed, plus the bias",
                {"X": [[[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]], [[9.0, 10.0, 11.0], [12.0, 13.0, 14.0], [15.0, 16.0, 17.0]]]],
                 "K": [[[[0.0, 1.0], [2.0, 3.0]], [[1.0, 0.0], [0.0, -1.0]]]], "b": [1.0]},
                [[[[16.0, 22.0], [34.0, 40.0]]]],
            ),
            PublicCase(
                "stride 2 and padding 1",
                {"X": [[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]]], "K": [[[[1.0, 1.0], [1.0, 1.0]]]], "stride": 2, "padding": 1},
                [[[[1.0, 5.0], [11.0, 28.0]]]],
            ),
        ),
    ),
    Exercise(
        name="pool2d",
        assignment="08_conv_layers",
        notebook="conv_layers.ipynb",
        signature='X, kernel_size, stride=None, padding=0, mode="max"',
        summary="max and average pooling with stride and padding",
        tests=_tests(max_values=2, avg_values=1, gradients=1, stride=2, padding=1, edge_cases=1, device=1, no_mutation=1),
        forbidden=(
            _F(
                "torch.nn.functional.max_pool2d",
                (
                    "torch.nn.functional.max_pool1d",
                    "torch.nn.functional.max_pool3d",
                    "torch.nn.functional.max_pool1d_with_indices",
                    "torch.nn.functional.max_pool2d_with_indices",
                    "torch.nn.functional.max_pool3d_with_indices",
                    "torch.nn.functional._max_pool1d",
                    "torch.nn.functional._max_pool2d",
                    "torch.nn.functional._max_pool3d",
                    "torch.nn.functional.fractional_max_pool2d",
                    "torch.nn.functional.fractional_max_pool3d",
                    "torch._C._nn.max_pool2d_with_indices",
                    "torch._C._nn.max_pool3d_with_indices",
                    "torch._C._nn.fractional_max_pool2d",
                    "torch._C._nn.fractional_max_pool3d",
                ),
                ("aten.max_pool", "aten.fractional_max_pool", "aten.mkldnn_max_pool", "aten.quantized_max_pool"),
            ),
            _F(
                "torch.nn.functional.avg_pool2d",
                (
                    "torch.nn.functional.avg_pool1d",
                    "torch.nn.functional.avg_pool3d",
                    "torch._C._nn.avg_pool2d",
                    "torch._C._nn.avg_pool3d",
                ),
                ("aten.avg_pool",),
            ),
            _F(
                "torch.nn.functional.adaptive_max_pool2d",
                (
                    "torch.nn.functional.adaptive_max_pool1d",
                    "torch.nn.functional.adaptive_max_pool3d",
                    "torch.nn.functional.adaptive_max_pool1d_with_indices",
                    "torch.nn.functional.adaptive_max_pool2d_with_indices",
                    "torch.nn.functional.adaptive_max_pool3d_with_indices",
                    "torch.nn.functional.adaptive_avg_pool1d",
                    "torch.nn.functional.adaptive_avg_pool2d",
                    "torch.nn.functional.adaptive_avg_pool3d",
                    "torch._C._nn.adaptive_max_pool2d",
                    "torch._C._nn.adaptive_max_pool3d",
                    "torch._C._nn.adaptive_avg_pool2d",
                    "torch._C._nn.adaptive_avg_pool3d",
                    "torch.adaptive_max_pool1d",
                    "torch.adaptive_avg_pool1d",
                    "torch._adaptive_avg_pool2d",
                    "torch._adaptive_avg_pool3d",
                ),
                ("aten.adaptive_", "aten._adaptive_avg_pool"),
            ),
            _F(
                "torch.nn.functional.lp_pool2d",
                ("torch.nn.functional.lp_pool1d", "torch.nn.functional.lp_pool3d"),
            ),
            _F(
                "torch.max_pool2d",
                (
                    "torch.max_pool1d",
                    "torch.max_pool3d",
                    "torch.max_pool1d_with_indices",
                    "torch.quantized_max_pool1d",
                    "torch.quantized_max_pool2d",
                    "torch.quantized_max_pool3d",
                    "torch.mkldnn_max_pool2d",
                    "torch.mkldnn_max_pool3d",
                    "torch._C._VariableFunctions.max_pool2d",
                ),
            ),
            _F("torch.avg_pool1d", ("torch._C._VariableFunctions.avg_pool1d",)),
            _F(
                "torch.nn.MaxPool2d",
                (
                    "torch.nn.MaxPool1d",
                    "torch.nn.MaxPool3d",
                    "torch.nn.AvgPool1d",
                    "torch.nn.AvgPool2d",
                    "torch.nn.AvgPool3d",
                    "torch.nn.AdaptiveMaxPool1d",
                    "torch.nn.AdaptiveMaxPool2d",
                    "torch.nn.AdaptiveMaxPool3d",
                    "torch.nn.AdaptiveAvgPool1d",
                    "torch.nn.AdaptiveAvgPool2d",
                    "torch.nn.AdaptiveAvgPool3d",
                    "torch.nn.LPPool1d",
                    "torch.nn.LPPool2d",
                    "torch.nn.LPPool3d",
                    "torch.nn.FractionalMaxPool2d",
                    "torch.nn.FractionalMaxPool3d",
                ),
            ),
        ),
        call=Function(grad_wrt=("X",)),
        public_cases=(
            PublicCase("max, 2x2 windows side by side (stride defaults to the window)",
                       {"X": [[[[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0], [8.0, 9.0, 10.0, 11.0], [12.0, 13.0, 14.0, 15.0]]]],
                        "kernel_size": 2}, [[[[5.0, 7.0], [13.0, 15.0]]]]),
            PublicCase("max, overlapping 2x2 windows with stride 1",
                       {"X": [[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]]], "kernel_size": 2, "stride": 1},
                       [[[[5.0, 6.0], [8.0, 9.0]]]]),
            PublicCase("avg with padding 1: the padded zeros count",
                       {"X": [[[[1.0, 2.0], [3.0, 4.0]]]], "kernel_size": 2, "stride": 1, "padding": 1, "mode": "avg"},
                       [[[[0.25, 0.75, 0.5], [1.0, 2.5, 1.5], [0.75, 1.75, 1.0]]]]),
        ),
    ),
    Exercise(
        name="batch_norm",
        assignment="09_batch_norm",
        notebook="batch_norm.ipynb",
        signature="X, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5",
        summary="batch normalization in training and evaluation mode, running statistics updated in place",
        tests=_tests(training_values=1, channel_statistics=1, running_statistics=2, evaluation=2, gradients=1,
                     no_history=1, device=1, no_mutation=1),
        forbidden=(
            _F("torch.nn.functional.batch_norm"),
            _F("torch.batch_norm", ("torch._C._VariableFunctions.batch_norm", "torch.cudnn_batch_norm",
                                    "torch.miopen_batch_norm"),
               ("aten.batch_norm", "aten._batch_norm", "aten.cudnn_batch_norm", "aten.miopen_batch_norm")),
            _F(
                "torch.nn.BatchNorm2d",
                ("torch.nn.BatchNorm1d", "torch.nn.BatchNorm3d", "torch.nn.LazyBatchNorm1d", "torch.nn.LazyBatchNorm2d",
                 "torch.nn.LazyBatchNorm3d", "torch.nn.SyncBatchNorm", "torch.nn.modules.batchnorm._BatchNorm"),
            ),
            _F(
                "torch.nn.functional.instance_norm",
                ("torch.instance_norm", "torch._C._VariableFunctions.instance_norm", "torch.nn.InstanceNorm1d",
                 "torch.nn.InstanceNorm2d", "torch.nn.InstanceNorm3d"),
                ("aten.instance_norm",),
            ),
            _F(
                "torch.native_batch_norm",
                ("torch._C._VariableFunctions.native_batch_norm", "torch._native_batch_norm_legit",
                 "torch._native_batch_norm_legit_no_training", "torch.batch_norm_stats", "torch.batch_norm_elemt",
                 "torch.batch_norm_gather_stats", "torch.batch_norm_gather_stats_with_counts",
                 "torch.batch_norm_backward_reduce", "torch.batch_norm_backward_elemt",
                 "torch.batch_norm_update_stats"),
                ("aten.native_batch_norm", "aten._native_batch_norm", "aten.batch_norm_", "aten.miopen_batch_norm",
                 "aten.cudnn_batch_norm", "aten._batch_norm_with_update", "aten._batch_norm_no_update"),
            ),
        ),
        call=Function(grad_wrt=("X", "gamma", "beta"), mutates=("running_mean", "running_var")),
        public_cases=(
            PublicCase(
                "training on (n, c): batch statistics, running statistics updated in place",
                {"X": [[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]], "gamma": [1.0, 2.0], "beta": [0.0, 1.0],
                 "running_mean": [0.0, 0.0], "running_var": [1.0, 1.0], "training": True},
                {"output": [[-1.2247425750014138, -1.0380974856351388], [0.0, 0.32063417145495365],
                            [1.2247425750014138, 3.7174633141801854]],
                 "running_mean": [0.2, 0.4], "running_var": [1.3, 2.2]},
            ),
            PublicCase(
                "evaluation: the running statistics, left unchanged",
                {"X": [[1.0, 2.0], [3.0, -1.0]], "gamma": [1.0, 1.0], "beta": [0.0, 0.5],
                 "running_mean": [1.0, 0.0], "running_var": [4.0, 1.0], "training": False, "momentum": 0.1, "eps": 0.0},
                {"output": [[0.0, 2.5], [1.0, -0.5]], "running_mean": [1.0, 0.0], "running_var": [4.0, 1.0]},
            ),
        ),
    ),
)

BY_NAME: Mapping[str, Exercise] = MappingProxyType({e.name: e for e in EXERCISES})


def assignments() -> dict[str, list[Exercise]]:
    """Assignment id -> its exercises, in registry order."""
    out: dict[str, list[Exercise]] = {}
    for exercise in EXERCISES:
        out.setdefault(exercise.assignment, []).append(exercise)
    return out



# Notebook conventions: grade ids of the cells in solutions/ (see README "Notebook anatomy").
SETUP_PREFIXES = ("setup", "provided")  # locked code the grader runs from the trusted copy
CHECK_PREFIX = "check_"  # public check cells: run by students, never by the grader
TEST_PREFIX = "test_"  # nbgrader autograder-test cells: graded by the engine
DEMO_PREFIX = "demo_"  # demos that use the student's function: never run by the grader
