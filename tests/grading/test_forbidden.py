"""Forbidden-call detection: the static scan, the runtime recorders, and their agreement with the
registry and the contract (docs/exercises.md).

Every forbidden routine of every exercise is used by a student snippet in several ways (directly,
through aliases, getattr/importlib, a helper, a module-level alias, a Tensor method, torch.ops.aten);
each must be caught by the static scan and, when the snippet runs, by the runtime recorders (run
in-process here: they are plain torch code). Valid code must never be flagged: false positives are
worse than misses.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import inspect
import re
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import reference
from autograder.grading import forbidden as fb
from autograder.course.conventions import Function, GradsInPlace, OptimizerState
from autograder.course.registry import BY_NAME, EXERCISES
from autograder.grading import public
from autograder.submission.scan import DYNAMIC_ATTRIBUTE, DYNAMIC_CODE, DYNAMIC_IMPORT, TAMPERING, scan
from autograder.worker.recorders import Recorder, routine_of
from torch.overrides import _get_current_function_mode_stack
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

EXERCISES_MD = Path(__file__).resolve().parents[2] / "docs" / "exercises.md"
CHECKED = [e for e in EXERCISES if e.forbidden]


# -- inputs for running student code ---------------------------------------------------------------


def _grads(*shapes):
    params = [torch.randn(*shape, dtype=torch.float64, requires_grad=True) for shape in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 10
    return params


def make_args(exercise: str, device: str = "cpu") -> dict:
    """The arguments of the exercise's first public case, called the way its calling convention
    says (``.grad`` set for in-place gradient and optimizer conventions, on tensors that do not
    require grad so that snippets may update them in place), on ``device``; a ``Function``'s
    ``grad_wrt`` inputs require grad."""
    spec = BY_NAME[exercise]
    values = public.trial(spec, spec.public_cases[0]).values(spec)

    def move(value):
        if isinstance(value, torch.Tensor):
            moved = value.detach().to(device)
            if value.grad is not None:
                moved.grad = value.grad.to(device)
            return moved
        if isinstance(value, (list, tuple)):
            return type(value)(move(v) for v in value)
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    def leaves(value):
        if isinstance(value, torch.Tensor):
            return [value]
        items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
        return [leaf for item in items for leaf in leaves(item)]

    values = {name: move(value) for name, value in values.items()}
    if isinstance(spec.call, Function):
        for name in spec.call.grad_wrt:
            for leaf in leaves(values.get(name)):
                if leaf.is_floating_point():
                    leaf.requires_grad_()
    return values


GATED_PARAMETERS = {
    "gru_cell": ("W_xz", "W_hz", "b_z", "W_xr", "W_hr", "b_r", "W_xh", "W_hh", "b_h"),
    "lstm_cell": ("W_xi", "W_hi", "b_i", "W_xf", "W_hf", "b_f", "W_xo", "W_ho", "b_o", "W_xc", "W_hc", "b_c"),
}
# torch's stacked weights from the d2l parameters: GRU gates r, z, n; LSTM gates i, f, g, o.
_GRU_WIH = "torch.cat([params['W_xr'], params['W_xz'], params['W_xh']], 1).T.contiguous()"
_GRU_WHH = "torch.cat([params['W_hr'], params['W_hz'], params['W_hh']], 1).T.contiguous()"
_LSTM_WIH = "torch.cat([params['W_xi'], params['W_xf'], params['W_xc'], params['W_xo']], 1).T.contiguous()"
_LSTM_WHH = "torch.cat([params['W_hi'], params['W_hf'], params['W_hc'], params['W_ho']], 1).T.contiguous()"
_H = {"gru_cell": "h", "lstm_cell": "state[0]"}
_C = {"gru_cell": "", "lstm_cell": ", state[1]"}


def _gated_usage(exercise: str) -> dict[str, str]:
    h, c = _H[exercise], _C[exercise]
    gru_w = (f"{_GRU_WIH}, {_GRU_WHH}" if exercise == "gru_cell" else
             "torch.cat([params['W_xi']] * 3, 1).T.contiguous(), torch.cat([params['W_hi']] * 3, 1).T.contiguous()")
    lstm_w = (f"{_LSTM_WIH}, {_LSTM_WHH}" if exercise == "lstm_cell" else
              "torch.cat([params['W_xz']] * 4, 1).T.contiguous(), torch.cat([params['W_hz']] * 4, 1).T.contiguous()")
    hc = "state" if exercise == "lstm_cell" else "(h, h)"
    size = f"x.shape[1], {h}.shape[1], dtype=x.dtype"
    return {
        "torch.nn.GRU": f"{{f}}({size})(x[None], {h}[None])[1][0]{c}",
        "torch.nn.GRUCell": f"{{f}}({size})(x, {h}){c}",
        "torch.nn.LSTM": f"{{f}}({size})(x[None])[0][0]{c}",
        "torch.nn.LSTMCell": f"{{f}}({size})(x, {hc})" + ("" if exercise == "lstm_cell" else "[0]"),
        "torch.nn.RNN": f"{{f}}({size})(x[None], {h}[None])[0][0]{c}",
        "torch.gru_cell": f"{{f}}(x, {h}, {gru_w}){c}",
        "torch.lstm_cell": f"{{f}}(x, {hc}, {lstm_w})" + ("" if exercise == "lstm_cell" else "[0]"),
        "torch.gru": f"{{f}}(x[None], {h}[None], [{gru_w}], False, 1, 0.0, False, False, False)[0][0]{c}",
    }


def new_recorder(exercise) -> Recorder:
    recorder = Recorder(fb.patterns_for(exercise), fb.aten_for(exercise), fb.sentinels_for(exercise))
    recorder.install()
    return recorder


def run_recorded(exercise: str, code: str, device: str = "cpu"):
    """Run a student's code the way the worker does: recorders installed first, then the cells
    executed, then the graded function called (and differentiated) inside ``recording()``.

    Returns (forbidden names of the hits, tampering notes, output)."""
    recorder = new_recorder(exercise)
    namespace: dict = {"__name__": "student"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, "<student>", "exec"), namespace)
        args = make_args(exercise, device)
        with recorder.recording():
            out = namespace[exercise](**args)
            first = out[0] if isinstance(out, tuple) else out
            if isinstance(first, torch.Tensor) and first.requires_grad:
                first.sum().backward()
    names = {fb.name_for(exercise, hit) for hit in recorder.hits()}
    return names, recorder.tampered(), out


def static_calls(code: str | list[str], exercise: str) -> set[str]:
    cells = [code] if isinstance(code, str) else code
    return {f.call for f in scan(cells, exercise, BY_NAME[exercise].forbidden)}


# -- the routes: every forbidden name, reached in every way a student might -------------------------

SIGNATURES = {e.name: e.signature for e in EXERCISES}

#: The optimizers of docs/exercises.md §17-19 forbid the same three routines.
OPTIM_USAGE = {
    "torch.optim.SGD": "{f}(params, lr=lr, momentum=0.9).step()",
    "torch.optim.Adagrad": "{f}(params, lr=lr).step()",
    "torch.optim.RMSprop": "{f}(params, lr=lr).step()",
}
#: The fused kernels behind torch.optim's fused SGD and Adagrad, called directly.
_FUSED_SGD = ("{f}(list(params), [p.grad for p in params], list({buffers}), weight_decay=0.0, momentum=0.9, lr=lr,"
              " dampening=0.0, nesterov=False, maximize=False, is_first_step=False)")
_FUSED_ADAGRAD = ("{f}(list(params), [p.grad for p in params], list({sums}), [torch.tensor(0.0) for p in params], lr=lr,"
                  " lr_decay=0.0, weight_decay=0.0, eps=1e-10, maximize=False)")
#: Forbidden name -> how a student would use it ("{f}" is the routine, however it was obtained).
USAGE = {
    "softmax": {
        "torch.softmax": "{f}(X, -1)",
        "torch.nn.functional.softmax": "{f}(X, dim=-1)",
        "torch.special.softmax": "{f}(X, -1)",
        "torch.nn.Softmax": "{f}(dim=-1)(X)",
        "torch.log_softmax": "{f}(X, -1).exp()",
    },
    "cross_entropy": {
        "torch.nn.functional.cross_entropy": "{f}(torch.log(y_hat), y, reduction='none')",
        "torch.nn.functional.nll_loss": "{f}(torch.log(y_hat), y, reduction='none')",
        "torch.nn.CrossEntropyLoss": "{f}(reduction='none')(torch.log(y_hat), y)",
        "torch.nn.NLLLoss": "{f}(reduction='none')(torch.log(y_hat), y)",
    },
    "dropout": {
        "torch.nn.functional.dropout": "{f}(X, drop_prob)",
        "torch.dropout": "{f}(X, drop_prob, True)",
        "torch.nn.Dropout": "{f}(drop_prob)(X)",
    },
    "corr2d": {
        "torch.nn.functional.conv2d": "{f}(X[None, None], K[None, None])[0, 0]",
        "torch.conv2d": "{f}(X[None, None], K[None, None])[0, 0]",
        "torch.nn.Conv2d": "{f}(1, 1, tuple(K.shape), bias=False, dtype=X.dtype)(X[None, None])[0, 0]",
        "torch.convolution": "{f}(X[None, None], K[None, None], None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)[0, 0]",
    },
    "clip_grad": {
        "torch.nn.utils.clip_grad_norm_": "{f}(params, theta)",
        "torch.nn.utils.clip_grad_norm": "{f}(params, theta)",
        "torch.nn.utils.clip_grad_value_": "{f}(params, theta)",
        "torch.nn.utils.get_total_norm": "{f}([p.grad for p in params if p.grad is not None])",
        "torch.nn.utils.clip_grads_with_norm_": "{f}(params, theta, torch.tensor(5.0, dtype=torch.float64))",
    },
    "adam_step": {
        "torch.optim.Adam": "{f}(params, lr=lr).step()",
        "torch.optim.AdamW": "{f}(params, lr=lr, weight_decay=0.0).step()",
        "torch.optim._functional.adam": (
            "{f}(list(params), [p.grad for p in params], [v for v, s in states], [s for v, s in states], [],"
            " [torch.tensor(float(t - 1)) for p in params], amsgrad=False, beta1=beta1, beta2=beta2, lr=lr,"
            " weight_decay=0.0, eps=eps, maximize=False)"
        ),
        "torch._fused_adam_": (
            "{f}(list(params), [p.grad for p in params], [v for v, s in states], [s for v, s in states], [],"
            " [torch.tensor(float(t)) for p in params], lr=lr, beta1=beta1, beta2=beta2, weight_decay=0.0,"
            " eps=eps, amsgrad=False, maximize=False)"
        ),
    },
    "gru_cell": _gated_usage("gru_cell"),
    "lstm_cell": _gated_usage("lstm_cell"),
    "self_attention": {
        "torch.nn.functional.scaled_dot_product_attention": "{f}(X @ W_q, X @ W_k, X @ W_v, attn_mask=mask)",
        "torch.nn.MultiheadAttention": "{f}(X.shape[-1], 1, batch_first=True, dtype=X.dtype)(X, X, X)[0]",
        "torch.nn.functional.multi_head_attention_forward": (
            "{f}(X.transpose(0, 1), X.transpose(0, 1), X.transpose(0, 1), X.shape[-1], 1,"
            " torch.cat([W_q, W_k, W_v], 1).T.contiguous(), None, None, None, False, 0.0,"
            " torch.eye(X.shape[-1], dtype=X.dtype), None, need_weights=False)[0].transpose(0, 1)"
        ),
    },
    "bce_with_logits": {
        "torch.nn.functional.binary_cross_entropy_with_logits": "{f}(z, y, reduction='none')",
        "torch.nn.functional.binary_cross_entropy": "{f}(torch.sigmoid(z), y, reduction='none')",
        "torch.nn.BCEWithLogitsLoss": "{f}(reduction='none')(z, y)",
        "torch.nn.BCELoss": "{f}(reduction='none')(torch.sigmoid(z), y)",
        "torch.nn.functional.softplus": "{f}(z) - y * z",
        "torch.nn.functional.logsigmoid": "-(y * {f}(z) + (1 - y) * {f}(-z))",
        "torch.nn.Softplus": "{f}()(z) - y * z",
        "torch.nn.LogSigmoid": "-(y * {f}()(z) + (1 - y) * {f}()(-z))",
    },
    "sgd_momentum_step": OPTIM_USAGE,
    "adagrad_step": OPTIM_USAGE,
    "rmsprop_step": OPTIM_USAGE,
    "conv2d": {
        "torch.nn.functional.conv2d": "{f}(X, K, b, stride, padding)",
        "torch.conv2d": "{f}(X, K, b, stride, padding)",
        "torch.nn.Conv2d": "{f}(K.shape[1], K.shape[0], tuple(K.shape[2:]), stride=stride, padding=padding, bias=False, dtype=X.dtype)(X)",
        "torch.convolution": "{f}(X, K, b, [stride, stride], [padding, padding], [1, 1], False, [0, 0], 1)",
    },
    "pool2d": {
        "torch.nn.functional.max_pool2d": "{f}(X, kernel_size, stride, padding)",
        "torch.nn.functional.avg_pool2d": "{f}(X, kernel_size, stride, padding)",
        "torch.nn.functional.adaptive_max_pool2d": "{f}(X, (X.shape[-2] // kernel_size, X.shape[-1] // kernel_size))",
        "torch.nn.functional.lp_pool2d": "{f}(X, 1.0, kernel_size, stride) / kernel_size ** 2",
        "torch.max_pool2d": "{f}(X, kernel_size, stride or kernel_size, padding)",
        "torch.avg_pool1d": "{f}(X.flatten(0, 1), kernel_size)",
        "torch.nn.MaxPool2d": "{f}(kernel_size, stride, padding)(X)",
    },
    "batch_norm": {
        "torch.nn.functional.batch_norm": "{f}(X, running_mean, running_var, gamma, beta, training, momentum, eps)",
        "torch.batch_norm": "{f}(X, gamma, beta, running_mean, running_var, training, momentum, eps, False)",
        "torch.nn.BatchNorm2d": (
            "{f}(X.shape[1], eps=eps, momentum=momentum, affine=False, dtype=X.dtype)(X[..., None, None])[..., 0, 0]"
            " * gamma + beta"
        ),
        "torch.nn.functional.instance_norm": "{f}(X.T[None], eps=eps)[0].T * gamma + beta",
        "torch.native_batch_norm": "{f}(X, gamma, beta, running_mean, running_var, training, momentum, eps)[0]",
    },
    "layer_norm": {
        "torch.nn.functional.layer_norm": "{f}(X, (X.shape[-1],), gamma, beta, eps)",
        "torch.layer_norm": "{f}(X, [X.shape[-1]], gamma, beta, eps)",
        "torch.nn.LayerNorm": "{f}(X.shape[-1], eps=eps, elementwise_affine=False, dtype=X.dtype)(X) * gamma + beta",
        "torch.nn.functional.group_norm": "{f}(X, 1, None, None, eps) * gamma + beta",
        "torch.native_layer_norm": "{f}(X, [X.shape[-1]], gamma, beta, eps)[0]",
        "torch.nn.functional.rms_norm": "{f}(X - X.mean(-1, keepdim=True), (X.shape[-1],), gamma, eps) + beta",
    },
    "multi_head_attention": {
        "torch.nn.functional.scaled_dot_product_attention": (
            "{f}((X @ W_q).unflatten(-1, (num_heads, -1)).transpose(1, 2), (X @ W_k).unflatten(-1, (num_heads, -1)).transpose(1, 2),"
            " (X @ W_v).unflatten(-1, (num_heads, -1)).transpose(1, 2), attn_mask=mask).transpose(1, 2).flatten(-2) @ W_o"
        ),
        "torch.nn.MultiheadAttention": "{f}(X.shape[-1], num_heads, bias=False, batch_first=True, dtype=X.dtype)(X, X, X)[0]",
        "torch.nn.functional.multi_head_attention_forward": (
            "{f}(X.transpose(0, 1), X.transpose(0, 1), X.transpose(0, 1), X.shape[-1], num_heads,"
            " torch.cat([W_q, W_k, W_v], 1).T.contiguous(), None, None, None, False, 0.0,"
            " W_o.T.contiguous(), None, need_weights=False)[0].transpose(0, 1)"
        ),
    },
}

#: Tensor methods and dispatcher operators, written out per exercise: (forbidden name, body).
EXTRA_ROUTES = {
    "gru_cell": [
        ("torch._VF", f"torch._VF.gru_cell(x, h, {_GRU_WIH}, {_GRU_WHH})"),
        ("torch._VF", f"getattr(torch._VF, 'gru' + '_cell')(x, h, {_GRU_WIH}, {_GRU_WHH})"),
        ("torch.gru", f"torch.lstm(x[None], (h[None], h[None]), [{_GRU_WIH}[:h.shape[1]].repeat(4, 1), {_GRU_WHH}[:h.shape[1]].repeat(4, 1)], False, 1, 0.0, False, False, False)[0][0]"),
        ("torch.nn.RNN", "torch.nn.RNNCell(x.shape[1], h.shape[1], dtype=x.dtype)(x, h)"),
        ("torch.nn.GRUCell", "torch.nn.modules.rnn.GRUCell(x.shape[1], h.shape[1], dtype=x.dtype)(x, h)"),
    ],
    "lstm_cell": [
        ("torch._VF", f"torch._VF.lstm_cell(x, state, {_LSTM_WIH}, {_LSTM_WHH})"),
        ("torch.gru", "torch.rnn_tanh_cell(x, state[0], params['W_xi'].T.contiguous(), params['W_hi'].T.contiguous()), state[1]"),
    ],
    "softmax": [
        ("Tensor.softmax", "X.softmax(-1)"),
        ("Tensor.softmax", "X.softmax(dim=-1)"),
        ("Tensor.softmax", "(X * 1.0).softmax(-1)"),
        ("Tensor.softmax", "getattr(X, 'soft' + 'max')(-1)"),
        ("Tensor.softmax", "torch.Tensor.softmax(X, -1)"),
        ("Tensor.softmax", "type(X).softmax(X, -1)"),
        ("torch.log_softmax", "X.log_softmax(-1).exp()"),
        ("torch.log_softmax", "torch.nn.functional.log_softmax(X, -1).exp()"),
        ("torch.log_softmax", "torch.special.log_softmax(X, -1).exp()"),
        ("torch.log_softmax", "torch.nn.LogSoftmax(dim=-1)(X).exp()"),
        ("torch.softmax", "torch.ops.aten._softmax(X, -1, False)"),
        ("torch.softmax", "torch.ops.aten._softmax.default(X, -1, False)"),
        ("torch.softmax", "torch._softmax(X, -1, False)"),
        ("torch.softmax", "torch.nn.functional.softmin(-X, -1)"),
        ("torch.nn.Softmax", "torch.nn.modules.activation.Softmax(dim=-1)(X)"),
        ("torch.softmax", "torch.torch.softmax(X, -1)"),
        ("torch.softmax", "vars(torch)['softmax'](X, -1)"),
        ("torch.softmax", "sys.modules['torch'].softmax(X, -1)"),
        ("torch.softmax", "getattr(torch, ''.join(['so', 'ft', 'max']))(X, -1)"),
        ("torch.softmax", "getattr(torch, 'xamtfos'[::-1])(X, -1)"),
        ("torch.softmax", "getattr(torch, 'SOFTMAX'.lower())(X, -1)"),
        ("torch.softmax", "getattr(torch, '{}max'.format('soft'))(X, -1)"),
        ("torch.nn.functional.softmax", "__import__('torch').nn.functional.softmax(X, -1)"),
        ("torch.nn.functional.softmax", "__import__('torch.nn.functional', fromlist=['softmax']).softmax(X, -1)"),
    ],
    "cross_entropy": [
        ("torch.nn.functional.nll_loss", "torch.ops.aten.nll_loss(torch.log(y_hat), y, None, 0, -100)"),
        ("torch.nn.CrossEntropyLoss", "torch.nn.modules.loss.CrossEntropyLoss(reduction='none')(torch.log(y_hat), y)"),
    ],
    "dropout": [
        ("torch.nn.functional.dropout", "torch.ops.aten.native_dropout(X, drop_prob, True)[0]"),
        ("torch.nn.functional.dropout", "torch.native_dropout(X, drop_prob, True)[0]"),
        ("torch.nn.functional.dropout", "torch.nn.functional.dropout1d(X, drop_prob)"),
        ("torch.nn.functional.dropout", "torch.nn.functional.dropout2d(X[None], drop_prob)[0]"),
        ("torch.nn.functional.dropout", "torch.nn.functional.alpha_dropout(X, drop_prob, training=True)"),
        ("torch.nn.functional.dropout", "torch.nn.functional.feature_alpha_dropout(X[None], drop_prob, training=True)[0]"),
        ("torch.nn.Dropout", "torch.nn.AlphaDropout(drop_prob)(X)"),
    ],
    "corr2d": [
        ("torch.convolution", "torch.ops.aten.convolution(X[None, None], K[None, None], None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)[0, 0]"),
        ("torch.conv2d", "torch.ops.aten.conv2d(X[None, None], K[None, None])[0, 0]"),
        ("torch.nn.functional.conv2d", "torch.nn.functional.conv1d(X[:, None], K[None, None, 0])[:, 0]"),
        ("torch.nn.functional.conv2d", "torch.nn.functional.conv_transpose2d(X[None, None], K[None, None])[0, 0]"),
        ("torch.convolution", "torch._convolution(X[None, None], K[None, None], None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, False, False, True, True)[0, 0]"),
    ],
    "clip_grad": [
        ("torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grad.clip_grad_norm_(params, theta)"),
        ("torch.nn.utils.get_total_norm", "sys.modules['torch.nn.utils.clip_grad']._get_total_norm([p.grad for p in params])"),
    ],
    "adam_step": [
        ("torch.optim.Adam", "torch.optim.Adam(params, lr=lr, foreach=True).step()"),
        ("torch.optim.Adam", "torch.optim.Adam(params, lr=lr, fused=True).step()"),
        ("torch._fused_adam_", "torch.ops.aten._fused_adam_(list(params), [p.grad for p in params], [v for v, s in states], [s for v, s in states], [], [torch.tensor(float(t)) for p in params], lr=lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)"),
    ],
    "self_attention": [
        ("torch.nn.functional.scaled_dot_product_attention", "torch.ops.aten.scaled_dot_product_attention(X @ W_q, X @ W_k, X @ W_v, mask)"),
        ("torch.nn.functional.scaled_dot_product_attention", "torch._C._nn.scaled_dot_product_attention(X @ W_q, X @ W_k, X @ W_v, attn_mask=mask)"),
    ],
    "bce_with_logits": [
        ("torch.nn.functional.binary_cross_entropy_with_logits", "torch.binary_cross_entropy_with_logits(z, y, None, None, 0)"),
        ("torch.nn.functional.binary_cross_entropy_with_logits", "torch.ops.aten.binary_cross_entropy_with_logits(z, y, None, None, 0)"),
        ("torch.nn.functional.softplus", "torch.ops.aten.softplus(z, 1, 20) - y * z"),
    ],
    "sgd_momentum_step": [
        ("torch.optim.SGD", "torch.optim.SGD(params, lr=lr, momentum=momentum, foreach=True).step()"),
        ("torch._fused_sgd_", _FUSED_SGD.format(f="torch._fused_sgd_", buffers="velocities")),
        ("torch._fused_sgd_", _FUSED_SGD.format(f="torch.ops.aten._fused_sgd_", buffers="velocities")),
        ("torch._fused_adagrad_", _FUSED_ADAGRAD.format(f="torch._fused_adagrad_", sums="velocities")),
        ("torch.optim.SGD", "torch.optim._functional.sgd(list(params), [p.grad for p in params], list(velocities), weight_decay=0.0, momentum=momentum, lr=lr, dampening=0.0, nesterov=False, maximize=False)"),
    ],
    "adagrad_step": [
        ("torch.optim.Adagrad", "torch.optim.Adagrad(params, lr=lr, foreach=True).step()"),
        ("torch._fused_adagrad_", _FUSED_ADAGRAD.format(f="torch._fused_adagrad_", sums="states")),
        ("torch._fused_adagrad_", _FUSED_ADAGRAD.format(f="torch.ops.aten._fused_adagrad_", sums="states")),
        ("torch._fused_sgd_", _FUSED_SGD.format(f="torch._fused_sgd_", buffers="states")),
    ],
    "rmsprop_step": [
        ("torch.optim.RMSprop", "torch.optim.RMSprop(params, lr=lr, foreach=True).step()"),
        ("torch._fused_sgd_", _FUSED_SGD.format(f="torch._fused_sgd_", buffers="states")),
        ("torch._fused_adagrad_", _FUSED_ADAGRAD.format(f="torch._fused_adagrad_", sums="states")),
    ],
}


def _split(path: str) -> tuple[str, str]:
    module, attribute = path.rsplit(".", 1)
    return module, attribute


def variants(path: str, usage: str) -> dict[str, tuple[str, str]]:
    """Ways of reaching ``path``: variant -> (module-level prelude, the expression for ``{f}``)."""
    module, attribute = _split(path)
    half = max(1, len(attribute) // 2)
    return {
        "direct": ("", path),
        "module alias": (f"import {module} as _m\n", f"_m.{attribute}"),
        "from import": (f"from {module} import {attribute} as _f\n", "_f"),
        "getattr importlib": ("import importlib\n", f"getattr(importlib.import_module('{module}'), '{attribute[:half]}' + '{attribute[half:]}')"),
        "getattr fstring": (f"_NAME = '{attribute[half:]}'\n", f"getattr({module}, f'{attribute[:half]}{{_NAME}}')"),
        "module-level alias": (f"_f = {path}\n", "_f"),
        "helper": ("def _helper(*args, **kwargs):\n    return " + path + "(*args, **kwargs)\n", "_helper"),
        "class helper": ("class _Ops:\n    @staticmethod\n    def go(*args, **kwargs):\n        return " + path + "(*args, **kwargs)\n", "_Ops.go"),
        "lambda": (f"_g = lambda *args, **kwargs: {path}(*args, **kwargs)\n", "_g"),
    }


PRELUDE = "import math\nimport sys\nimport torch\nimport torch.nn.functional as F\n"


def student_code(exercise: str, prelude: str, body: str) -> str:
    return (
        PRELUDE
        + prelude
        + f"\ndef {exercise}({SIGNATURES[exercise]}):\n    return {body}\n"
    )


ROUTES = [
    pytest.param(exercise, name, student_code(exercise, prelude, usage.format(f=expression)), id=f"{exercise}-{name}-{variant}")
    for exercise, usages in USAGE.items()
    for name, usage in usages.items()
    for variant, (prelude, expression) in variants(name, usage).items()
] + [
    pytest.param(exercise, name, student_code(exercise, "", body), id=f"{exercise}-{name}-{body[:40]}")
    for exercise, routes in EXTRA_ROUTES.items()
    for name, body in routes
]


def test_every_forbidden_name_has_routes():
    for exercise in CHECKED:
        assert set(USAGE[exercise.name]) | {n for n, _ in EXTRA_ROUTES.get(exercise.name, [])} == {
            f.name for f in exercise.forbidden
        }, exercise.name


@pytest.mark.parametrize("exercise, name, code", ROUTES)
def test_static_scan_catches(exercise, name, code):
    assert name in static_calls(code, exercise), code


@pytest.mark.parametrize("exercise, name, code", ROUTES)
def test_runtime_recorders_catch(exercise, name, code):
    names, tampered, _ = run_recorded(exercise, code)
    assert names, f"no recorder saw the forbidden call in:\n{code}"
    assert names <= {f.name for f in BY_NAME[exercise].forbidden}
    assert tampered == []


# -- more ways around the static scan ---------------------------------------------------------------

TRICKS = {
    "import as t": ["import torch as t\ndef softmax(X):\n    return t.nn.functional.softmax(X, -1)\n"],
    "from torch.nn import functional": ["from torch.nn import functional as G\ndef softmax(X):\n    return G.softmax(X, dim=-1)\n"],
    "module alias in another cell": ["import torch\nnnf = torch.nn.functional\n", "def softmax(X):\n    return nnf.softmax(X, -1)\n"],
    "local alias": ["import torch\ndef softmax(X):\n    mod = torch.nn.functional\n    return mod.softmax(X, -1)\n"],
    "local import": ["def softmax(X):\n    from torch import softmax as sm\n    return sm(X, -1)\n"],
    "nested function": ["import torch\ndef softmax(X):\n    def inner(Z):\n        return Z.softmax(-1)\n    return inner(X)\n"],
    "default argument": ["import torch\ndef softmax(X, f=torch.softmax):\n    return f(X, -1)\n"],
    "decorator": ["import torch, functools\ndef softmax_wrapper(f):\n    return lambda X: torch.softmax(X, -1)\n@softmax_wrapper\ndef softmax(X):\n    return X\n"],
    "class instance": ["import torch\nclass S:\n    def __call__(self, X):\n        return torch.nn.functional.softmax(X, -1)\nsoftmax = S()\n"],
    "graded name is the routine": ["import torch\nsoftmax = torch.softmax\n"],
    "graded name imported": ["from torch.nn.functional import softmax\n"],
    "star import": ["from torch.nn.functional import *\ndef softmax(X):\n    return log_softmax(X, -1).exp()\n"],
    "two-level helper": ["import torch\ndef a(X):\n    return b(X)\ndef b(X):\n    return X.softmax(-1)\n", "def softmax(X):\n    return a(X)\n"],
    "exec at top level": ["exec('def softmax(X):\\n    return X.softmax(-1)\\n')\n"],
    "constant through a name": ["import torch\nNAME = 'soft' 'max'\ndef softmax(X):\n    return getattr(torch, NAME)(X, -1)\n"],
    "operator.attrgetter": ["import operator, torch\ndef softmax(X):\n    return operator.attrgetter('nn.functional.softmax')(torch)(X, -1)\n"],
    "operator.methodcaller": ["import operator\ndef softmax(X):\n    return operator.methodcaller('softmax', -1)(X)\n"],
    "setup cell not scanned": ["def softmax(X):\n    return F.softmax(X, -1)\n"],
    "conditional alias": ["import torch\nif True:\n    sm = torch.softmax\nelse:\n    sm = None\ndef softmax(X):\n    return sm(X, -1)\n"],
    "redefined, last one wins": ["def softmax(X):\n    return X.exp() / X.exp().sum(-1, keepdim=True)\n", "def softmax(X):\n    return X.softmax(-1)\n"],
}


@pytest.mark.parametrize("cells", list(TRICKS.values()), ids=list(TRICKS))
def test_static_scan_resolves(cells):
    assert static_calls(cells, "softmax") & {f.name for f in BY_NAME["softmax"].forbidden}


def test_dynamic_access_counts_inside_the_graded_code():
    dynamic_getattr = "import torch\ndef softmax(X, name='soft'):\n    return getattr(torch, name + input())(X, -1)\n"
    assert static_calls(dynamic_getattr, "softmax") == {DYNAMIC_ATTRIBUTE}
    dynamic_vars = "import torch\ndef softmax(X):\n    return vars(torch.nn.functional)[X.name](X, -1)\n"
    assert static_calls(dynamic_vars, "softmax") == {DYNAMIC_ATTRIBUTE}
    dynamic_import = "import importlib\ndef softmax(X):\n    return importlib.import_module(X.mod).softmax(X, -1)\n"
    assert DYNAMIC_IMPORT in static_calls(dynamic_import, "softmax")
    evaluated = "import torch\ndef softmax(X):\n    return eval('tor' + 'ch.softmax(X, -1)')\n"
    assert static_calls(evaluated, "softmax") == {DYNAMIC_CODE, "torch.softmax"}
    opaque = "def softmax(X):\n    return exec(X.code)\n"
    assert static_calls(opaque, "softmax") == {DYNAMIC_CODE}


def test_dynamic_access_outside_the_graded_code_is_not_a_violation():
    cells = [
        "import torch\nfor name in ['exp', 'log']:\n    print(getattr(torch, name))\nprint(eval('1 + 1'))\n",
        "def softmax(X):\n    e = (X - X.amax(-1, keepdim=True)).exp()\n    return e / e.sum(-1, keepdim=True)\n",
    ]
    assert static_calls(cells, "softmax") == set()
    # getattr on a tensor (not torch) with a computed name cannot be checked statically: the
    # runtime recorders do that.
    assert static_calls("def softmax(X, m='exp'):\n    e = getattr(X, m)()\n    return e / e.sum(-1, keepdim=True)\n", "softmax") == set()


def test_findings_carry_evidence():
    cells = ["import torch\n", "import torch.nn.functional as F\n\ndef softmax(X):\n    Z = X - X.max()\n    return F.softmax(Z, dim=-1)  # " + "x" * 100 + "\n"]
    [finding] = scan(cells, "softmax", BY_NAME["softmax"].forbidden)
    assert (finding.call, finding.cell, finding.line) == ("torch.nn.functional.softmax", 1, 5)
    assert finding.evidence == "F.softmax(Z, dim=-1)"
    long = "import torch\ndef softmax(X):\n    return torch.softmax(X + X + X + X + X + X + X + X + X + X + X + X + X + X + X + X + X + X + X + X + X + X + X, -1)\n"
    [finding] = scan([long], "softmax", BY_NAME["softmax"].forbidden)
    assert len(finding.evidence) <= 80 and finding.evidence.startswith("torch.softmax(")


def test_unparsable_cells_are_skipped():
    cells = ["def softmax(X:\n", "%%time\n", "import torch\ndef softmax(X):\n    return torch.softmax(X, -1)\n"]
    assert [(f.call, f.cell) for f in scan(cells, "softmax", BY_NAME["softmax"].forbidden)] == [("torch.softmax", 2)]


def test_nothing_forbidden_nothing_to_scan():
    code = "import torch\ndef q_learning_update(Q, s, a, r, s_next, done, alpha, gamma):\n    return eval('0.0')\n"
    assert scan([code], "q_learning_update", BY_NAME["q_learning_update"].forbidden) == []


def test_scan_survives_hostile_code():
    deep = "def softmax(X):\n    return " + "(" * 150 + "X" + ")" * 150 + "\n"
    cyclic = "a = a + 'x'\nb = c\nc = b\ndef softmax(X):\n    return getattr(X, a)(b)\n"
    chain = "import torch\ndef softmax(X):\n    return X" + ".exp()" * 400 + "\n"
    explode = "s0 = 'a'\n" + "".join(f"s{i} = s{i - 1} + s{i - 1}\n" for i in range(1, 40)) + "import torch\ndef softmax(X):\n    return getattr(torch, s39)(X)\n"
    for code in (deep, cyclic, chain, explode):
        scan([code], "softmax", BY_NAME["softmax"].forbidden)  # terminates, no exception


# -- valid code is never flagged ---------------------------------------------------------------------

ALLOWED = {
    "softmax": [
        "def softmax(X):\n    X = X - X.max(dim=-1, keepdim=True).values\n    e = torch.exp(X)\n    return e / e.sum(-1, keepdim=True)\n",
        "def softmax(X):\n    return torch.exp(X - torch.logsumexp(X, -1, keepdim=True))\n",
        "def softmax(X):\n    F = (X - X.amax(-1, keepdim=True)).exp()  # shadows the module alias\n    return F / F.sum(-1, keepdim=True)\n",
        "class Ops:\n    def softmax(self, X):\n        e = (X - X.amax(-1, keepdim=True)).exp()\n        return e / e.sum(-1, keepdim=True)\nops = Ops()\n"
        "def softmax(X):\n    return ops.softmax(X)\n",
        "torch.backends.cudnn.benchmark = False\ndef softmax(X):\n    m = X.amax(-1, keepdim=True)\n    return (X - m).exp() / (X - m).exp().sum(-1, keepdim=True)\n",
    ],
    "cross_entropy": [
        "def cross_entropy(y_hat, y):\n    return -torch.log(y_hat[range(len(y_hat)), y])\n",
        "def cross_entropy(y_hat, y):\n    return -torch.gather(y_hat, 1, y.unsqueeze(1)).squeeze(1).log()\n",
        "def cross_entropy(y_hat, y):\n    one_hot = F.one_hot(y, y_hat.shape[1]).to(y_hat.dtype)\n    return -(one_hot * torch.log(y_hat)).sum(1)\n",
    ],
    "dropout": [
        "def dropout(X, drop_prob):\n    assert 0 <= drop_prob <= 1\n    if drop_prob == 1:\n        return torch.zeros_like(X)\n    mask = torch.bernoulli(torch.full_like(X, 1 - drop_prob))\n    return mask * X / (1 - drop_prob)\n",
        "def dropout(X, drop_prob):\n    mask = (torch.rand(X.shape, device=X.device) > drop_prob).float()\n    return mask * X / (1.0 - drop_prob)\n",
        "def dropout(X, drop_prob):\n    keep = torch.empty_like(X).bernoulli_(1 - drop_prob)\n    return X * keep / (1 - drop_prob)\n",
    ],
    "corr2d": [
        "def corr2d(X, K):\n    kh, kw = K.shape\n    return torch.einsum('ijab,ab->ij', X.unfold(0, kh, 1).unfold(1, kw, 1), K)\n",
        "def corr2d(X, K):\n    kh, kw = K.shape\n    cols = F.unfold(X[None, None], (kh, kw))\n    return (K.reshape(1, -1) @ cols[0]).reshape(X.shape[0] - kh + 1, X.shape[1] - kw + 1)\n",
        "def corr2d(X, K):\n    h, w = K.shape\n    Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1), dtype=X.dtype)\n    for i in range(Y.shape[0]):\n        for j in range(Y.shape[1]):\n            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()\n    return Y\n",
        "def corr2d(X, K):\n    kh, kw = K.shape\n    windows = X.unfold(0, kh, 1).unfold(1, kw, 1)\n    return torch.matmul(windows.reshape(*windows.shape[:2], -1), K.reshape(-1))\n",
    ],
    "clip_grad": [
        "def clip_grad(params, theta):\n    grads = [p.grad for p in params if p.grad is not None]\n    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))\n    if norm > theta:\n        for g in grads:\n            g *= theta / norm\n    return norm\n",
        "def clip_grad(params, theta):\n    norm = torch.norm(torch.cat([p.grad.flatten() for p in params]))\n    for p in params:\n        p.grad.mul_(torch.clamp(theta / norm, max=1.0))\n    return norm\n",
    ],
    "adam_step": [
        "def adam_step(params, states, lr, t, beta1=0.9, beta2=0.999, eps=1e-8):\n    with torch.no_grad():\n        for p, (v, s) in zip(params, states):\n            v[:] = beta1 * v + (1 - beta1) * p.grad\n            s[:] = beta2 * s + (1 - beta2) * p.grad ** 2\n            p -= lr * (v / (1 - beta1 ** t)) / (torch.sqrt(s / (1 - beta2 ** t)) + eps)\n",
        "def adam_step(params, states, lr, t, beta1=0.9, beta2=0.999, eps=1e-8):\n    vs, ss = [v for v, _ in states], [s for _, s in states]\n    grads = [p.grad for p in params]\n    torch._foreach_mul_(vs, beta1)\n    torch._foreach_add_(vs, grads, alpha=1 - beta1)\n    torch._foreach_mul_(ss, beta2)\n    torch._foreach_addcmul_(ss, grads, grads, value=1 - beta2)\n    with torch.no_grad():\n        for p, v, s in zip(params, vs, ss):\n            p.sub_(lr * (v / (1 - beta1 ** t)) / ((s / (1 - beta2 ** t)).sqrt() + eps))\n",
    ],
    "self_attention": [
        "def self_attention(X, W_q, W_k, W_v, mask=None):\n    Q, K, V = X @ W_q, X @ W_k, X @ W_v\n    S = Q @ K.transpose(-2, -1) / math.sqrt(K.shape[-1])\n    if mask is not None:\n        S = S.masked_fill(~mask, float('-inf'))\n    return torch.softmax(S, dim=-1) @ V\n",
        "def self_attention(X, W_q, W_k, W_v, mask=None):\n    S = torch.bmm(X @ W_q, (X @ W_k).transpose(1, 2)) / (W_k.shape[1] ** 0.5)\n    if mask is not None:\n        S = S.masked_fill(~mask, -math.inf)\n    return F.softmax(S, -1) @ (X @ W_v)\n",
        "def self_attention(X, W_q, W_k, W_v, mask=None):\n    S = torch.einsum('bid,bjd->bij', X @ W_q, X @ W_k) / math.sqrt(W_q.shape[1])\n    if mask is not None:\n        S = torch.where(mask, S, torch.tensor(float('-inf'), dtype=S.dtype))\n    return (S.softmax(-1)) @ (X @ W_v)\n",
    ],
}
ALLOWED_CASES = [
    pytest.param(exercise, code, id=f"{exercise}-{i}") for exercise, codes in ALLOWED.items() for i, code in enumerate(codes)
]


@pytest.mark.parametrize("exercise, code", ALLOWED_CASES)
def test_allowed_code_is_not_flagged(exercise, code):
    code = PRELUDE + code
    assert static_calls(code, exercise) == set(), code
    names, tampered, _ = run_recorded(exercise, code)
    assert names == set() and tampered == [], code


def _reference_cells(exercise: str) -> list[str]:
    module = inspect.getmodule(getattr(reference, exercise))
    source = inspect.getsource(module).replace("from .linear import softmax", "from reference.linear import softmax")
    return [source]


@pytest.mark.parametrize("exercise", [e.name for e in CHECKED])
def test_reference_implementations_are_clean(exercise):
    assert static_calls(_reference_cells(exercise), exercise) == set()
    recorder = new_recorder(exercise)
    args = make_args(exercise)
    with recorder.recording():
        out = getattr(reference, exercise)(**args)
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.sum().backward()
    assert recorder.hits() == [] and recorder.tampered() == []


def _fixture_functions():
    directory = Path(__file__).resolve().parents[1] / "fixtures" / "implementations"
    for exercise in CHECKED:
        if not (directory / f"{exercise.name}.py").exists():
            continue
        spec = importlib.util.spec_from_file_location(f"_implementations_{exercise.name}", directory / f"{exercise.name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, function in vars(module).items():
            if name.startswith("correct_") and inspect.isfunction(function):
                yield pytest.param(exercise.name, function, id=f"{exercise.name}-{name}")


@pytest.mark.parametrize("exercise, function", list(_fixture_functions()))
def test_known_correct_implementations_are_clean(exercise, function):
    source = textwrap.dedent(inspect.getsource(function))
    source = re.sub(r"^def \w+\(", f"def {exercise}(", source, count=1, flags=re.M)
    code = "import math\nimport torch\nimport numpy as np\n" + source
    assert static_calls(code, exercise) == set(), source
    names, tampered, _ = run_recorded(exercise, code)
    assert names == set() and tampered == []


def test_a_students_own_checks_at_top_level_are_not_violations():
    cells = [
        "import torch\nimport torch.nn.functional as F\n",
        "def softmax(X):\n    e = (X - X.amax(-1, keepdim=True)).exp()\n    return e / e.sum(-1, keepdim=True)\n",
        "X = torch.randn(2, 5)\nassert torch.allclose(softmax(X), F.softmax(X, dim=-1))\nprint(X.softmax(-1), torch.nn.Softmax(-1)(X))\n"
        "def check():\n    return torch.allclose(softmax(X), torch.softmax(X, -1))\ncheck()\n",
    ]
    assert static_calls(cells, "softmax") == set()
    # At run time too: forbidden calls made while the cells run (outside recording()) are not
    # recorded, sentinels included.
    recorder = new_recorder("softmax")
    namespace: dict = {}
    for cell in cells:
        exec(cell, namespace)
    with recorder.recording():
        namespace["softmax"](torch.randn(2, 3))
    assert recorder.hits() == []


def test_torch_softmax_is_allowed_in_self_attention_and_is_a_helper_there():
    cells = [
        "import torch\nimport torch.nn.functional as F\n",
        "def softmax(X):\n    return F.softmax(X, -1)\n",  # forbidden in the softmax exercise only
        "def self_attention(X, W_q, W_k, W_v, mask=None):\n    S = (X @ W_q) @ (X @ W_k).transpose(1, 2)\n"
        "    if mask is not None:\n        S = S.masked_fill(~mask, float('-inf'))\n    return softmax(S / W_q.shape[1] ** 0.5) @ (X @ W_v)\n",
    ]
    assert static_calls(cells, "self_attention") == set()
    assert static_calls(cells, "softmax") == {"torch.nn.functional.softmax"}
    names, tampered, _ = run_recorded("self_attention", "".join(cells))
    assert names == set() and tampered == []


# -- the recorders change nothing ---------------------------------------------------------------------


class _MaskedDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, p):
        mask = (torch.rand_like(X) >= p).to(X.dtype) / (1 - p)
        ctx.save_for_backward(mask)
        return X * mask

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def _with_hook(X):
    Y = X * 2
    Y.register_hook(lambda grad: grad * 1.0)
    return Y


VALID_MACHINERY = {
    "autograd.Function": lambda X: _MaskedDropout.apply(X, 0.3),
    "tensor hook": _with_hook,
    "vmap": lambda X: torch.vmap(lambda row: (row - row.max()).exp() / (row - row.max()).exp().sum())(X),
    "torch.func.grad": lambda X: torch.func.grad(lambda z: (z ** 2).sum())(X.detach()) + X,
    "autograd.grad inside": lambda X: torch.autograd.grad((X ** 2).sum(), X, create_graph=True)[0],
    "checkpoint": lambda X: torch.utils.checkpoint.checkpoint(torch.exp, X, use_reentrant=False),
    "numpy round trip": lambda X: X + torch.from_numpy(X.detach().numpy()).sum().item(),
    "complex numbers": lambda X: torch.view_as_real(torch.fft.fft(X)).sum(-1),
    "Parameter and Linear": lambda X: torch.nn.Linear(X.shape[-1], 4, dtype=X.dtype)(torch.nn.Parameter(X.detach()) * X),
}


@pytest.mark.parametrize("code", list(VALID_MACHINERY.values()), ids=list(VALID_MACHINERY))
def test_valid_autograd_machinery_is_neither_flagged_nor_tampering(code):
    X = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    recorder = new_recorder("dropout")
    with recorder.recording():
        code(X).sum().backward()
    assert X.grad is not None
    assert recorder.hits() == [] and recorder.tampered() == []


def _outputs_and_grads(exercise, args):
    """What a call leaves behind, read through the exercise's calling convention."""
    call = BY_NAME[exercise].call
    out = getattr(reference, exercise)(**args)
    if isinstance(call, GradsInPlace):
        return [torch.as_tensor(out)] + [p.grad for p in args[call.params]]
    if isinstance(call, OptimizerState):
        states = [s for entry in args[call.states] for s in (entry if isinstance(entry, (tuple, list)) else [entry])]
        return list(args[call.params]) + states
    inputs = [a for a in args.values() if isinstance(a, torch.Tensor) and a.requires_grad]
    return [out, *torch.autograd.grad(out, inputs, torch.ones_like(out))]


@pytest.mark.parametrize("exercise", ["softmax", "cross_entropy", "corr2d", "self_attention", "clip_grad", "adam_step"])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_recording_is_transparent(exercise, device):
    expected = _outputs_and_grads(exercise, make_args(exercise, device))
    recorder = new_recorder(exercise)
    with recorder.recording():
        got = _outputs_and_grads(exercise, make_args(exercise, device))
    assert recorder.hits() == [] and recorder.tampered() == []
    for e, g in zip(expected, got, strict=True):
        assert g.device.type == device and g.dtype == e.dtype and g.shape == e.shape
        if device != "meta":
            torch.testing.assert_close(g, e, rtol=0, atol=0)
    assert _get_current_function_mode_stack() == [] and _get_current_dispatch_mode_stack() == []


def test_dropout_randomness_is_untouched():
    X = torch.randn(50, 50, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(3)
    expected = reference.dropout(X, 0.4)
    recorder = new_recorder("dropout")
    torch.manual_seed(3)
    with recorder.recording():
        got = reference.dropout(X, 0.4)
        got.sum().backward()
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert torch.equal(X.grad != 0, got != 0)


def test_sentinels_call_through():
    new_recorder("clip_grad")
    new_recorder("adam_step")
    new_recorder("softmax")
    from torch.nn.utils import clip_grad_norm_  # after install: the wrapper

    assert "max_norm" in inspect.signature(clip_grad_norm_).parameters
    assert not hasattr(clip_grad_norm_, "__wrapped__")
    params = _grads((3,), (4,))
    norm = torch.linalg.vector_norm(torch.cat([p.grad for p in params]))
    assert torch.isclose(clip_grad_norm_(params, 1.0), norm)
    assert torch.isclose(torch.linalg.vector_norm(torch.cat([p.grad for p in params])), torch.tensor(1.0, dtype=torch.float64))
    # torch.optim.Adam through the wrapped __init__/step equals the written-out update
    p1 = _grads((5,))[0]
    p2 = p1.detach().clone().requires_grad_()
    p2.grad = p1.grad.clone()
    torch.optim.Adam([p1], lr=0.1).step()
    reference.adam_step([p2], [(torch.zeros_like(p2), torch.zeros_like(p2))], 0.1, 1)
    torch.testing.assert_close(p1, p2)
    X = torch.randn(2, 3)
    torch.testing.assert_close(torch.nn.Softmax(dim=-1)(X), torch.softmax(X, -1))
    assert isinstance(torch.nn.Softmax(dim=-1), torch.nn.Module)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("exercise", ["softmax", "dropout", "corr2d", "self_attention"])
def test_recorders_on_cuda(exercise):
    forbidden_call = {
        "softmax": "def softmax(X):\n    return X.softmax(-1)\n",
        "dropout": "def dropout(X, drop_prob):\n    return torch.nn.functional.dropout(X, drop_prob)\n",
        "corr2d": "def corr2d(X, K):\n    return torch.nn.functional.conv2d(X[None, None], K[None, None])[0, 0]\n",
        "self_attention": "def self_attention(X, W_q, W_k, W_v, mask=None):\n    return torch.nn.functional.scaled_dot_product_attention(X @ W_q, X @ W_k, X @ W_v, attn_mask=mask)\n",
    }[exercise]
    names, tampered, out = run_recorded(exercise, "import torch\n" + forbidden_call, device="cuda")
    assert names and tampered == [] and out.device.type == "cuda"
    args = make_args(exercise, "cuda")
    recorder = new_recorder(exercise)
    with recorder.recording():
        got = getattr(reference, exercise)(**args)
    assert recorder.hits() == [] and got.device.type == "cuda"


# -- tampering ---------------------------------------------------------------------------------------

TAMPERING_CODE = {
    "disable torch function": "import torch\nwith torch._C.DisableTorchFunction():\n    pass\n",
    "import from overrides": "from torch.overrides import TorchFunctionMode\n",
    "import python_dispatch": "import torch.utils._python_dispatch as pd\n",
    "pop mode": "import torch\ntorch.overrides._pop_mode()\n",
    "pop C stack": "import torch\ntorch._C._pop_torch_function_stack()\n",
    "getattr constant": "import torch\ngetattr(torch._C, '_pop_torch_' + 'dispatch_stack')()\n",
    "own mode": "from torch.utils._python_dispatch import TorchDispatchMode\nclass M(TorchDispatchMode):\n    pass\n",
    "settrace": "import sys\nsys.settrace(None)\n",
    "setprofile alias": "from sys import setprofile as sp\nsp(None)\n",
    "reassign torch attribute": "import torch\ntorch.softmax = lambda X, dim: X\n",
    "reassign through alias": "import torch.nn.utils as U\nU.clip_grad_norm_ = print\n",
    "setattr on torch": "import torch\nsetattr(torch.nn.functional, 'softmax', None)\n",
    "delete torch attribute": "import torch\ndel torch.nn.utils.clip_grad_norm_\n",
    "patch Tensor": "import torch\ntorch.Tensor.softmax = torch.Tensor.exp\n",
    "torch namespace dict": "import torch\nvars(torch)['softmax'] = None\n",
    "sys.modules": "import sys\nsys.modules['torch.nn.functional'] = None\n",
    "builtins": "import builtins\nbuiltins.getattr = None\n",
    "reload": "import importlib, torch\nimportlib.reload(torch.nn.utils)\n",
    "inside the graded function": "import torch\ndef softmax(X):\n    with torch._C.DisableTorchFunction():\n        return X.softmax(-1)\n",
    "inside a never-called function": "import torch\ndef unused():\n    torch.overrides._pop_mode()\n",
}


@pytest.mark.parametrize("code", list(TAMPERING_CODE.values()), ids=list(TAMPERING_CODE))
def test_static_scan_reports_tampering_anywhere(code):
    cells = [code, "def softmax(X):\n    e = (X - X.amax(-1, keepdim=True)).exp()\n    return e / e.sum(-1, keepdim=True)\n"]
    assert TAMPERING in static_calls(cells, "softmax")


def test_legitimate_settings_are_not_tampering():
    cells = [
        "import torch\ntorch.backends.cudnn.benchmark = False\ntorch.backends.cuda.matmul.allow_tf32 = False\n"
        "torch.manual_seed(0)\ntorch.set_printoptions(precision=3)\nx = torch.zeros(3)\nx.requires_grad = True\n",
        "def softmax(X):\n    e = (X - X.amax(-1, keepdim=True)).exp()\n    return e / e.sum(-1, keepdim=True)\n",
    ]
    assert static_calls(cells, "softmax") == set()


def _pop_function_mode():
    torch.overrides._pop_mode()


def _pop_dispatch_mode():
    sys.modules["torch.utils._python_dispatch"]._pop_mode()


def _pop_dispatch_mode_temporarily():
    with sys.modules["torch.utils._python_dispatch"]._pop_mode_temporarily():
        torch.zeros(2).exp()


def _disable_torch_function():
    with torch._C.DisableTorchFunction():
        torch.zeros(2) + 1


def _disable_dispatch():
    with torch._C._DisableTorchDispatch():
        torch.zeros(2).exp()


class _PassThrough(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def _push_own_mode():
    _PassThrough().__enter__()


def _settrace():
    sys.settrace(lambda *args: None)


def _replace_sentinel():
    torch.nn.utils.clip_grad_norm_ = lambda *args, **kwargs: 0.0


def _patch_hook():
    mode = torch.overrides._get_current_function_mode()
    type(mode).__torch_function__ = lambda self, func, types, args=(), kwargs=None: func(*args, **(kwargs or {}))


RUNTIME_TAMPERING = {
    "pop function mode": _pop_function_mode,
    "pop dispatch mode": _pop_dispatch_mode,
    "pop dispatch mode temporarily": _pop_dispatch_mode_temporarily,
    "DisableTorchFunction": _disable_torch_function,
    "_DisableTorchDispatch": _disable_dispatch,
    "push a mode": _push_own_mode,
    "settrace": _settrace,
    "replace a sentinel": _replace_sentinel,
    "patch the hook": _patch_hook,
}


@pytest.mark.parametrize("attempt", list(RUNTIME_TAMPERING.values()), ids=list(RUNTIME_TAMPERING))
def test_runtime_tampering_is_reported_and_repaired(attempt):
    recorder = new_recorder("clip_grad")
    wrapper = torch.nn.utils.clip_grad_norm_
    tracer = sys.gettrace()
    try:
        with recorder.recording():
            attempt()
            torch.zeros(1).exp()
    finally:
        sys.settrace(tracer)
    assert recorder.tampered(), attempt.__name__
    # the worker is left as it was: stacks empty, hooks and sentinels restored, recording works
    assert _get_current_function_mode_stack() == [] and _get_current_dispatch_mode_stack() == []
    assert torch.nn.utils.clip_grad_norm_ is wrapper
    after = new_recorder("softmax")
    with after.recording():
        torch.zeros(2).softmax(-1)
    assert after.tampered() == [] and len(after.hits()) >= 2


# -- mapping hits back to the registry ----------------------------------------------------------------


def test_clear_forgets_between_calls():
    recorder = new_recorder("softmax")
    with recorder.recording():
        torch.zeros(2).softmax(-1)
        torch.overrides._pop_mode()
    assert recorder.hits() and recorder.tampered()
    recorder.clear()
    assert recorder.hits() == [] and recorder.tampered() == []
    with recorder.recording():
        torch.zeros(2).softmax(-1)
    assert recorder.hits() and recorder.tampered() == []


def test_name_for_maps_every_kind_of_hit():
    assert fb.name_for("softmax", "torch.Tensor.softmax (seen by the torch-function recorder)") == "Tensor.softmax"
    assert fb.name_for("softmax", ".softmax (seen by the torch-function recorder)") == "Tensor.softmax"
    assert fb.name_for("softmax", "aten._softmax.default (seen by the dispatcher recorder)") == "torch.softmax"
    assert fb.name_for("softmax", "aten._log_softmax_backward_data.default (seen by the dispatcher recorder)") == "torch.log_softmax"
    assert fb.name_for("softmax", "torch.nn.LogSoftmax (seen by a sentinel)") == "torch.log_softmax"
    assert fb.name_for("clip_grad", "torch.nn.utils.clip_grad._get_total_norm (seen by a sentinel)") == "torch.nn.utils.get_total_norm"
    assert fb.name_for("corr2d", "aten.convolution_backward.default (seen by the dispatcher recorder)") == "torch.convolution"
    assert fb.name_for(BY_NAME["adam_step"], "aten._fused_adamw_.default (seen by the dispatcher recorder)") == "torch._fused_adam_"
    # a re-export, recognised by identity
    assert fb.name_for("softmax", "torch.nn.modules.activation.Softmax") == "torch.nn.Softmax"
    for bogus in ("torch.exp (seen by the torch-function recorder)", "aten.mm.default", ""):
        with pytest.raises(ValueError):
            fb.name_for("softmax", bogus)
    with pytest.raises(ValueError):  # allowed in self_attention
        fb.name_for("self_attention", "aten._softmax.default (seen by the dispatcher recorder)")


def test_worker_lists_are_plain_and_derived_from_the_registry():
    for exercise in EXERCISES:
        patterns, aten, sentinels = fb.patterns_for(exercise), fb.aten_for(exercise), fb.sentinels_for(exercise)
        assert all(type(x) is str for x in patterns + aten + sentinels)
        assert set(sentinels) <= set(patterns)
        assert {f.name for f in exercise.forbidden} <= set(patterns)
        assert all(a.startswith("aten.") for a in aten)
    assert "torch.nn.utils.clip_grad_norm_" in fb.sentinels_for("clip_grad")
    assert {"torch.optim.Adam", "torch.optim.AdamW", "torch.optim._functional.adam"} <= set(fb.sentinels_for("adam_step"))
    assert {"torch.nn.Softmax", "torch.nn.LogSoftmax"} <= set(fb.sentinels_for("softmax"))
    # seen by the torch-function mode, so no sentinel is needed
    assert "torch.nn.functional.softmax" not in fb.sentinels_for("softmax")
    assert "torch.nn.functional.multi_head_attention_forward" not in fb.sentinels_for("self_attention")


def test_every_pattern_names_something_in_this_torch():
    importlib.import_module("torch.nn.attention.flex_attention")
    for exercise in CHECKED:
        for pattern in fb.patterns_for(exercise):
            if pattern == "torch._VF" or pattern.startswith("torch._VF."):
                # a module whose routines exist only on access (its __getattr__), which routine_of never calls
                assert pattern == "torch._VF" or callable(getattr(torch._VF, pattern.split(".")[-1])), pattern
            elif not pattern.startswith((".", "Tensor.")):
                assert routine_of(pattern) is not None, pattern


def test_allowed_routines_are_not_patterns():
    allowed = {
        "softmax": ["torch.exp", "torch.max", "torch.amax", "torch.logsumexp", "torch.sum", "torch.Tensor.exp"],
        "dropout": ["torch.bernoulli", "torch.rand", "torch.rand_like", "torch.Tensor.bernoulli_", "torch.where"],
        "corr2d": ["torch.matmul", "torch.einsum", "torch.Tensor.unfold", "torch.nn.functional.unfold", "torch.tensordot"],
        "self_attention": ["torch.softmax", "torch.nn.functional.softmax", "torch.Tensor.softmax", "torch.bmm", "torch.Tensor.masked_fill"],
        "clip_grad": ["torch.linalg.vector_norm", "torch.norm", "torch._foreach_norm", "torch._foreach_mul_"],
        "adam_step": ["torch._foreach_mul_", "torch._foreach_add_", "torch.Tensor.addcdiv_", "torch.sqrt"],
        "cross_entropy": ["torch.log", "torch.gather", "torch.nn.functional.one_hot", "torch.log_softmax"],
    }
    for exercise, names in allowed.items():
        forbidden = BY_NAME[exercise].forbidden
        for name in names:
            assert scan([f"import torch\ndef {exercise}(*a):\n    return {name}\n"], exercise, forbidden) == [], (exercise, name)


# -- the registry says what docs/exercises.md says ----------------------------------------------------------


def _forbidden_sections(text: str) -> dict[str, str]:
    """Exercise name -> the text of its "Forbidden:" item (first sentence), or "" if none."""
    out = {}
    for match in re.finditer(r"^## ([^\n]*)\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S):
        heading, body = match.group(1), match.group(2)
        item = re.search(r"^- Forbidden:(.*?)(?=^- |\Z)", body, flags=re.M | re.S)
        for name in re.findall(r"\d+\. `(\w+)\(", heading):  # one heading may declare several functions
            out[name] = " ".join(item.group(1).split()) if item else ""
    return out


def _parse_forbidden(sentence: str) -> tuple[list[tuple[str, list[str]]], str, list[str]]:
    """(main names with their parenthesised variants, the prose left over, names "allowed here")."""
    head, *rest = re.split(r"\.(?:\s|$)", sentence, maxsplit=1)
    tail = rest[0] if rest else ""
    allowed = re.findall(r"`([^`]+)` is allowed", tail)
    items: list[tuple[str, list[str]]] = []
    depth = 0
    for token in re.finditer(r"`([^`]+)`|(\()|(\))", head):
        if token.group(2):
            depth += 1
        elif token.group(3):
            depth -= 1
        elif depth == 0:
            items.append((token.group(1), []))
        else:
            items[-1][1].append(token.group(1))
    prose = re.sub(r"`[^`]+`|\([^)]*\)|[,.]", " ", head)
    return items, " ".join(prose.split()), allowed


def _expand(variant: str) -> list[str]:
    """``dropout1d/2d/3d`` -> dropout1d, dropout2d, dropout3d."""
    first, *rest = variant.split("/")
    return [first] + [first[: len(first) - len(r)] + r for r in rest]


def test_registry_forbidden_lists_match_exercises_md():
    """The "Forbidden:" item of each declared exercise's section of docs/exercises.md names exactly
    the registry's forbidden calls (sections of exercises not declared yet are not checked)."""
    sections = _forbidden_sections(EXERCISES_MD.read_text())
    assert set(sections) >= {e.name for e in EXERCISES}
    for exercise in EXERCISES:
        entries = {f.name: f for f in exercise.forbidden}
        items, prose, allowed = _parse_forbidden(sections[exercise.name])
        if not items:
            assert not entries, exercise.name
            continue
        namespace = items[0][0].rsplit(".", 1)[0]
        documented = set()
        for main, variants_ in items:
            name = main if "." in main else f"{namespace}.{main}"  # `clip_grad_norm` after torch.nn.utils.*
            documented.add(name)
            assert name in entries, (exercise.name, name)
            module = name.rsplit(".", 1)[0]
            for variant in (v for group in variants_ for v in _expand(group)):
                wanted = f"{module}.{variant}"
                assert any(fnmatch.fnmatchcase(p, wanted) for p in entries[name].all_patterns()), (exercise.name, wanted)
        extra = set(entries) - documented
        # Names the prose stands for: "the fused and foreach Adam kernels", "and its variants".
        if "fused" in prose:
            fused = {n for n in extra if "fused" in n}
            assert fused, exercise.name
            extra -= fused
        if "foreach" in prose:
            assert any("multi_tensor" in p for f in exercise.forbidden for p in f.all_patterns())
        if "its variants" in prose:
            variants_of = entries[items[-1][0]].all_patterns()
            base = items[-1][0].rsplit(".", 1)[1]
            assert {f"torch.nn.functional.{base}", f"torch.special.{base}", f".{base}"} <= set(variants_of)
        assert extra == set(), (exercise.name, extra)
        for name in allowed:
            assert name not in fb.patterns_for(exercise), (exercise.name, name)
            assert scan([f"import torch\ndef {exercise.name}(*a):\n    return {name}\n"], exercise.name, exercise.forbidden) == []


@pytest.mark.parametrize("exercise", [e.name for e in CHECKED])
def test_solution_notebooks_are_clean(exercise):
    import json

    notebook = Path(__file__).resolve().parents[2] / "solutions" / BY_NAME[exercise].notebook_path
    if not notebook.exists():
        pytest.skip(f"{notebook} not written yet")
    cells = ["".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    assert scan(cells, exercise, BY_NAME[exercise].forbidden) == []


# -- re-executed copies: new function objects, the same code origin ---------------------------------

REEXECUTED = {
    "clip_grad runpy": ("clip_grad", "import runpy\nCOPY = runpy.run_module('torch.nn.utils.clip_grad')\n"
                        "def clip_grad(params, theta):\n    return COPY['clip_grad_norm_'](params, theta)\n"),
    "clip_grad exec of the file": ("clip_grad", "import torch.nn.utils.clip_grad as m\nNS = {'__name__': 'x'}\n"
                                   "exec(compile(open(m.__file__).read(), m.__file__, 'exec'), NS)\n"
                                   "def clip_grad(params, theta):\n    return NS['clip_grad_norm_'](params, theta)\n"),
    "adam runpy class": ("adam_step", "import runpy\nA = runpy.run_module('torch.optim.adam')['Adam']\n"
                         "def adam_step(params, states, lr, t, beta1=0.9, beta2=0.999, eps=1e-8):\n"
                         "    A(params, lr=lr, betas=(beta1, beta2), eps=eps).step()\n"),
}


@pytest.mark.parametrize("exercise, code", list(REEXECUTED.values()), ids=list(REEXECUTED))
def test_sentinels_see_re_executed_copies(exercise, code):
    names, tampered, _ = run_recorded(exercise, code)
    assert names, f"a re-executed copy went unseen:\n{code}"
    assert all("sentinel" in note for note in tampered)  # re-running torch's module may rebind its sentinels
