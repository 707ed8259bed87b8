"""Trusted harnesses that call the student's function inside the worker, one per calling convention.

A harness takes the student's function, the decoded arguments and the convention's ``spec`` (the
exercise's parameter names: ``autograder/course/conventions.py``), calls the function the way the
convention says, and returns DATA: values, and the raw attributes of the caller's original objects
read back after the call (``[id, data_ptr]`` pairs, ``requires_grad``, ``is_leaf``, the name of
``grad_fn``). Harnesses never judge: every fact a score depends on is computed by the grader.
"""

from __future__ import annotations

import random
from typing import Any, Callable

import torch


def _fresh(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_fresh(v) for v in value)
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    return value


def _leaves(name: str, value: Any):
    """(label, tensor) for every tensor of an argument: ``name``, ``name.key`` inside a dict,
    ``name[i]`` inside a list or tuple (e.g. ``params.W_xz``, ``state[1]``)."""
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(f"{name}.{key}", item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _leaves(f"{name}[{index}]", item)


def _snapshot(value: Any) -> Any:
    """A detached copy of a tensor for the reply (None stays None, other values pass through)."""
    if type(value) is torch.Tensor:
        return value.detach().clone()
    if type(value) is tuple:
        return tuple(_snapshot(v) for v in value)
    return value


def function(fn: Callable, args: dict[str, Any], grad_wrt: list[str], upstream: Any,
             repeat: int, layouts: dict[str, str] | None = None, signature: list[str] | None = None) -> dict[str, Any]:
    """``fn(*args)`` (by the exercise's parameter names when ``signature`` covers them all, so
    that an omitted option keeps its default); with ``upstream`` (a tensor, or a list of tensors for a tuple output), the
    vector-Jacobian product with respect to each input named in ``grad_wrt``. Each call gets fresh
    copies; the inputs after the first call are read back with their autograd attributes."""
    calls = []
    inputs_after: dict[str, Any] = {}
    input_facts: dict[str, Any] = {}
    layouts = layouts or {}
    for index in range(max(1, repeat)):
        call_args = {k: _fresh(v) for k, v in args.items()}
        for name, layout in layouts.items():
            if isinstance(call_args.get(name), torch.Tensor):
                call_args[name] = _layout(call_args[name], str(layout))
        originals = {}
        for name in grad_wrt:
            for label, tensor in _leaves(name, call_args[name]):
                if tensor.is_floating_point() or tensor.is_complex():
                    tensor.requires_grad_(True)
                originals[label] = tensor
        versions = {k: v._version for k, v in call_args.items() if isinstance(v, torch.Tensor)}
        if signature and set(call_args) <= set(signature):
            output = _call(fn, signature, call_args)
        else:
            output = fn(*call_args.values())
        entry: dict[str, Any] = {"output": _snapshot(output), "grads": {}, "grad_error": None}
        if upstream is not None and grad_wrt:
            entry["grads"], entry["grad_error"] = _gradients(output, originals, upstream)
        calls.append(entry)
        if index == 0:
            inputs_after = {k: _snapshot(v) for k, v in call_args.items() if isinstance(v, torch.Tensor)}
            input_facts = {k: _facts(v, versions[k]) for k, v in call_args.items() if isinstance(v, torch.Tensor)}
    return {"calls": calls, "inputs_after": inputs_after, "input_facts": input_facts}


def _facts(tensor: torch.Tensor, version_before: int) -> dict[str, Any]:
    """What the first call did to a tensor argument the caller still holds, as plain data: how
    many in-place writes it saw, whether it now records autograd history (and through which node)
    and whether it requires grad. The grader draws the conclusions."""
    grad_fn = tensor.grad_fn
    return {"writes": int(tensor._version - version_before), "grad_fn": None if grad_fn is None else type(grad_fn).__name__,
            "requires_grad": bool(tensor.requires_grad)}


def _gradients(output: Any, inputs: dict[str, torch.Tensor], upstream: Any):
    if isinstance(upstream, list):
        return _tuple_gradients(output, inputs, upstream)
    if type(output) is not torch.Tensor:
        return {}, f"the output is a {type(output).__name__}, not a tensor, so no gradient can flow"
    if tuple(output.shape) != tuple(upstream.shape):
        return {}, f"the output has shape {tuple(output.shape)}, so gradients cannot be taken"
    if not output.requires_grad:
        return {}, "the output does not require grad: the computation was detached from the inputs"
    upstream = upstream.to(device=output.device, dtype=output.dtype)
    names = list(inputs)
    grads = torch.autograd.grad(output, [inputs[n] for n in names], upstream, allow_unused=True)
    return {n: (None if g is None else g.detach().clone()) for n, g in zip(names, grads)}, None


def _tuple_gradients(output: Any, inputs: dict[str, torch.Tensor], upstream: list):
    """The VJP of a tuple output: one upstream tensor per element."""
    if type(output) is not tuple or len(output) != len(upstream) or any(type(o) is not torch.Tensor for o in output):
        return {}, f"the output is not a tuple of {len(upstream)} tensors, so gradients cannot be taken"
    for index, (o, u) in enumerate(zip(output, upstream)):
        if tuple(o.shape) != tuple(u.shape):
            return {}, f"output [{index}] has shape {tuple(o.shape)}, so gradients cannot be taken"
    pairs = [(o, u.to(device=o.device, dtype=o.dtype)) for o, u in zip(output, upstream) if o.requires_grad]
    if not pairs:
        return {}, "no output requires grad: the computation was detached from the inputs"
    names = list(inputs)
    grads = torch.autograd.grad([o for o, _ in pairs], [inputs[n] for n in names], [u for _, u in pairs], allow_unused=True)
    return {n: (None if g is None else g.detach().clone()) for n, g in zip(names, grads)}, None


def _call(fn: Callable, signature: list[str], values: dict[str, Any]) -> Any:
    """``fn`` called with ``values`` by the exercise's parameter names: positionally in signature
    order up to the first name not given, by keyword after it (omitted options keep the student's
    defaults)."""
    args, kwargs, gap = [], {}, False
    for name in signature:
        if name not in values:
            gap = True
        elif gap:
            kwargs[name] = values[name]
        else:
            args.append(values[name])
    return fn(*args, **kwargs)


def _identity(value: Any) -> list[int] | None:
    """The object's id and storage pointer, read back as data (``None`` for no tensor)."""
    if not isinstance(value, torch.Tensor):
        return None if value is None else [id(value), -1]
    ptr = value.data_ptr() if value.device.type != "meta" else 0
    return [id(value), int(ptr)]


def _meta(value: Any) -> dict[str, Any]:
    """Raw autograd attributes of a tensor (or that it is not one)."""
    if not isinstance(value, torch.Tensor):
        return {"is_tensor": False}
    return {"is_tensor": True, "is_leaf": bool(value.is_leaf), "requires_grad": bool(value.requires_grad),
            "grad_fn": None if value.grad_fn is None else type(value.grad_fn).__name__}


def grads_in_place(fn: Callable, args: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Before each step every ``p.grad`` is set to a fresh copy of that step's gradient (``None``
    leaves it unset), then the function is called with the exercise's other arguments."""
    params_name = spec["params"]
    params = [p.detach().clone().requires_grad_(True) for p in args[params_name]]
    options = {k: v for k, v in args.items() if k not in (params_name, "steps")}
    returned, grads, before, after = [], [], [], []
    for step in args["steps"]:
        for p, g in zip(params, step):
            p.grad = None if g is None else g.detach().clone()
        before.append([_identity(p.grad) for p in params])
        # "generator": params passed as a generator, iterable once (as model.parameters() is)
        given = (p for p in params) if args.get("generator") else params
        value = _call(fn, spec["signature"], {params_name: given, **options})
        returned.append(_snapshot(value))
        grads.append([_snapshot(p.grad) for p in params])
        after.append([_identity(p.grad) for p in params])
    return {"returned": returned, "grads": grads, "params_after": [_snapshot(p) for p in params],
            "grad_identity_before": before, "grad_identity_after": after}


def _layout(value: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values in a non-contiguous leaf tensor: ``transposed`` (last two dimensions'
    strides swapped) or ``strided`` (every other element of a larger storage)."""
    if value.dim() == 0 or layout not in ("transposed", "strided"):
        return value
    if layout == "transposed" and value.dim() >= 2:
        out = value.transpose(-1, -2).contiguous().transpose(-1, -2)
    else:
        out = torch.empty((*value.shape[:-1], 2 * value.shape[-1]), dtype=value.dtype, device=value.device)[..., ::2]
        out.copy_(value)
    return out.detach()




def optimizer_state(fn: Callable, args: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Parameters become leaves with ``requires_grad=True``, states zeros shaped like each
    parameter (a tuple per parameter, or one tensor when the layout is one name); for t = 1..T:
    ``p.grad`` = that step's gradient, then one call."""
    params_name, states_name, step_name = spec["params"], spec["states"], spec.get("step")
    params = [p.detach().clone().requires_grad_(True) for p in args[params_name]]
    layout = spec["state_layout"]
    if isinstance(layout, str):
        states: list[Any] = [torch.zeros_like(p, requires_grad=False) for p in params]
    else:
        states = [tuple(torch.zeros_like(p, requires_grad=False) for _ in layout) for p in params]

    def state_tensors() -> list[Any]:
        return [t for entry in states for t in (entry if isinstance(entry, (tuple, list)) else [entry])]

    identity_before = [_identity(p) for p in params] + [_identity(t) for t in state_tensors()]
    options = {**{k: v for k, v in args.items() if k not in (params_name, "steps", "options", "state_size")},
               **dict(args.get("options") or {})}
    history, returned, grads_after = [], [], []
    for t, step in enumerate(args["steps"], start=1):
        for p, g in zip(params, step):
            p.grad = g.detach().clone()
        values = {params_name: params, states_name: states, **options}
        if step_name:
            values[step_name] = t
        returned.append(_snapshot(_call(fn, spec["signature"], values)))
        history.append([_snapshot(p) for p in params])
        grads_after.append([_snapshot(p.grad) for p in params])
    current = state_tensors()
    return {"params": history, "states": [[_snapshot(v) for v in (entry if isinstance(entry, (tuple, list)) else [entry])]
                                           for entry in states],
            "returned": returned, "grads_after": grads_after,
            "identity_before": identity_before, "identity_after": [_identity(p) for p in params] + [_identity(t) for t in current],
            "params_meta": [_meta(p) for p in params], "states_meta": [_meta(t) for t in current],
            # the same data in the layout the optimizer suites read (suites/_optimizers.py)
            "grads": grads_after, "identities_before": identity_before,
            "identities_after": [_identity(p) for p in params] + [_identity(t) for t in current],
            "params_autograd": [[bool(p.is_leaf), bool(p.requires_grad), p.grad_fn is not None] for p in params],
            "states_autograd": [[isinstance(t, torch.Tensor) and t.grad_fn is not None
                                 for t in (entry if isinstance(entry, (tuple, list)) else [entry])] for entry in states]}


def table_update(fn: Callable, args: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    table_name = spec["table"]
    table = args[table_name].detach().clone()
    before = _identity(table)
    value = _call(fn, spec["signature"], {**args, table_name: table})
    return {"returned": _snapshot(value), f"{table_name}_after": _snapshot(table), "identity_before": before,
            "identity_after": _identity(table)}


def episode_loop(fn: Callable, args: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The grader's epsilon-greedy episode loop on a gymnasium environment, calling a tabular update.

    args: ``env`` (a gymnasium id) and ``env_kwargs``; ``episodes``, ``max_steps`` (a longer episode
    is cut: truncated, not done), optionally ``max_total_steps`` (the run stops there, so that a
    table that never learns cannot walk at random for episodes * max_steps steps); ``gamma``,
    ``epsilon``, ``seed``; ``alphas``: ``[[first_episode, alpha], ...]`` (the step size from that
    episode on). The update is called by the exercise's parameter names (``spec["signature"]``),
    each one of ``_STEP_VALUES`` with the convention's table name for ``Q``; when the convention
    names a ``next_action`` the loop is on-policy (SARSA): the next action is chosen before the
    update, passed to it, and then taken. Epsilon-greedy with random tie-breaking from a zero
    float64 table. Returns the table and every transition as rows ``[s, a, r, s_next, a_next,
    done]`` (``a_next`` = -1 off-policy); the grader checks them against its own copy of the
    environment and replays them.
    """
    import gymnasium as gym

    table_name, next_name = spec["table"], spec.get("next_action")
    names = [str(n) for n in spec["signature"]]
    known = {table_name, *_STEP_VALUES, *([next_name] if next_name else [])}
    if any(n not in known for n in names):
        raise ValueError(f"episode_loop: unknown parameter in {names}")
    on_policy = bool(next_name)
    env = gym.make(str(args["env"]), max_episode_steps=int(args["max_steps"]), **dict(args.get("env_kwargs") or {}))
    n_states, n_actions = int(env.observation_space.n), int(env.action_space.n)
    Q = torch.zeros((n_states, n_actions), dtype=torch.float64)
    chooser = random.Random(int(args["seed"]))
    schedule = sorted((int(e), float(alpha)) for e, alpha in args["alphas"])
    gamma, epsilon = float(args["gamma"]), float(args["epsilon"])

    def choose(state: int) -> int:
        if chooser.random() < epsilon:
            return chooser.randrange(n_actions)
        row = Q[state].tolist()  # greedy, ties broken at random so an all-zero table still explores
        top = max(row)
        return chooser.choice([i for i in range(n_actions) if row[i] == top])

    budget = int(args.get("max_total_steps") or 0)  # 0: no limit; else the run stops after that many steps
    transitions = []
    for episode in range(int(args["episodes"])):
        if budget and len(transitions) >= budget:
            break
        alpha = [a for first, a in schedule if first <= episode][-1]
        s, _ = env.reset(seed=int(args["seed"]) + episode)
        a = choose(int(s))
        done = False
        while not done:
            s_next, r, terminated, truncated, _ = env.step(a)
            a_next = choose(int(s_next)) if on_policy else -1
            values = {table_name: Q, "s": int(s), "a": int(a), "r": float(r), "s_next": int(s_next),
                      "done": bool(terminated), "alpha": alpha, "gamma": gamma}
            if on_policy:
                values[next_name] = int(a_next)
            fn(*[values[n] for n in names])
            transitions.append([int(s), int(a), float(r), int(s_next), int(a_next), float(terminated)])
            s, done = s_next, terminated or truncated or bool(budget and len(transitions) >= budget)
            if on_policy:
                a = a_next
            elif not done:  # off-policy: the next action is chosen from the updated table
                a = choose(int(s))
    env.close()
    table = torch.tensor(transitions, dtype=torch.float64) if transitions else torch.zeros((0, 6), dtype=torch.float64)
    return {table_name: _snapshot(Q), "transitions": table}



def recurrent_cell(fn: Callable, args: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The grader's sequence through the student's cell: ``state = fn(x_t, state, params)`` for
    t = 1..T, then (with ``upstream``) backpropagation through time from every step's outputs."""
    tuple_state = bool(spec.get("tuple_state", args.get("tuple_state")))
    layouts = dict(args.get("layouts") or {})
    upstream = args.get("upstream")
    xs = [_layout(_fresh(x), str(layouts.get("xs", ""))) for x in args["xs"]]
    state = [_layout(_fresh(s), str(layouts.get("state", ""))) for s in args["state"]]
    params = {k: _layout(_fresh(v), str(layouts.get("params", ""))) for k, v in dict(args["params"]).items()}
    if upstream is not None:
        for t in (*xs, *state, *params.values()):
            t.requires_grad_(True)
    current: Any = tuple(state) if tuple_state else state[0]
    outputs = []
    for x in xs:
        current = fn(x, current, params)
        outputs.append(current)
    result: dict[str, Any] = {"outputs": [_snapshot_tree(o) for o in outputs], "grads": None, "grad_error": None,
                              "inputs_after": {"xs": [_snapshot(x) for x in xs], "state": [_snapshot(s) for s in state],
                                               "params": {k: _snapshot(v) for k, v in params.items()}}}
    if upstream is not None:
        result["grads"], result["grad_error"] = _bptt(outputs, upstream, xs, state, params, tuple_state)
    return result


def _snapshot_tree(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        return type(value)(_snapshot(v) for v in value)
    return _snapshot(value)


def _bptt(outputs: list, upstream: list, xs: list, state: list, params: dict, tuple_state: bool):
    """Gradients of sum_t sum_k <upstream[k][t], output_k at step t> (k over the state's tensors)."""
    pairs = []
    for t, out in enumerate(outputs):
        parts = list(out) if tuple_state and isinstance(out, (list, tuple)) else [out]
        if len(parts) != len(upstream):
            return None, f"step {t + 1} returned {len(parts)} value(s) where the state has {len(upstream)}"
        for k, part in enumerate(parts):
            if type(part) is not torch.Tensor:
                return None, f"step {t + 1} returned a {type(part).__name__}, not a tensor, so no gradient can flow"
            if tuple(part.shape) != tuple(upstream[k][t].shape):
                return None, f"step {t + 1} returned shape {tuple(part.shape)}, so gradients cannot be taken"
            if part.requires_grad:
                pairs.append((part, upstream[k][t].to(device=part.device, dtype=part.dtype)))
    if not pairs:
        return None, "the outputs do not require grad: the computation was detached from the inputs"
    inputs = [*xs, *state, *params.values()]
    grads = torch.autograd.grad([p for p, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True)
    grads = [None if g is None else g.detach().clone() for g in grads]
    n_x, n_s = len(xs), len(state)
    return {"xs": grads[:n_x], "state": grads[n_x:n_x + n_s],
            "params": dict(zip(params, grads[n_x + n_s:]))}, None


#: Gradients of at most this many elements come back whole; larger ones only as their norm.
_WHOLE_GRADIENT_NUMEL = 1 << 20


def module_transform(fn: Callable, args: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """A torchvision model built here (``weights=None``), passed to ``fn(model, *call_args)``.

    Args: ``builder`` (a ``torchvision.models`` function name), ``call_args``, ``dtype``, ``seed``,
    ``samples``, ``whole`` (parameter names whose values come back whole), ``inputs`` (their device
    is the model's), ``upstream``, ``capture`` (module names whose forward inputs come back).

    The model is built on the ``meta`` device (no memory, no initialisation) and, unless the
    inputs are on ``meta``, allocated with ``to_empty`` on their device and filled cheaply from the
    grader's seed. Reports, as data, every module and parameter before and after the call (names,
    types, ``id``s, shapes, ``requires_grad``, values at the grader's sample positions), the
    returned object's ``id``, and, with ``inputs``, an evaluation-mode forward pass of the model the
    caller holds: its output, the inputs of the modules named in ``capture``, the parameters its
    autograd graph reaches, and the gradients (with ``upstream``) of the small ones among those.
    """
    import torchvision

    inputs = args.get("inputs")
    device = inputs.device if isinstance(inputs, torch.Tensor) else torch.device(str(args.get("device", "cpu")))
    dtype = getattr(torch, str(args.get("dtype", "float32")))
    builder = getattr(torchvision.models, str(args["builder"]))
    with torch.device("meta"):
        model = builder(weights=None).to(dtype)
    if device.type != "meta":
        model.to_empty(device=device)
        _cheap_fill(model, int(args.get("seed", 0)))
    samples, seed, whole = int(args.get("samples", 8)), int(args.get("seed", 0)), list(args.get("whole", []))
    before = _model_table(model, samples, seed, whole)
    returned = fn(model, *list(args.get("call_args", [])))
    result: dict[str, Any] = {"model_id": id(model), "returned_id": id(returned),
                              "returned_type": _type_name(returned), "before": before,
                              "after": _model_table(model, samples, seed, whole),
                              "output": None, "forward_error": None, "captured": {}, "reached": [], "grads": {}}
    if isinstance(inputs, torch.Tensor):
        _forward_backward(model, inputs, args.get("upstream"), list(args.get("capture", [])), result)
    return result


def _type_name(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _cheap_fill(model: torch.nn.Module, seed: int) -> None:
    """Parameters ~ U(-sqrt(3 / fan_in), sqrt(3 / fan_in)) (unit-variance activations), buffers as
    after construction; large matrices (a VGG's 120 M classifier weights, whose random
    initialisation costs a second) constant: their outputs still differ through the random biases."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            bound = (3.0 / fan_in) ** 0.5
            if p.numel() > _WHOLE_GRADIENT_NUMEL:  # the mean of the inputs, times sqrt(3)
                p.fill_(3.0 ** 0.5 / fan_in)
            else:
                p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype).mul_(2 * bound).sub_(bound))
        for name, b in model.named_buffers():
            b.fill_(1 if name.endswith("running_var") else 0)


def _model_table(model: torch.nn.Module, samples: int, seed: int, whole: list[str]) -> dict[str, Any]:
    """Modules as [name, type, id]; parameters with their id, attributes, values at ``samples``
    positions drawn from ``seed`` and, for the names in ``whole`` (at most 1 M elements), all values."""
    modules = [[name, _type_name(m), id(m)] for name, m in model.named_modules()]
    params = []
    for name, p in model.named_parameters():
        row: dict[str, Any] = {"name": name, "id": id(p), "type": _type_name(p), "shape": list(p.shape),
                               "dtype": str(p.dtype).removeprefix("torch."), "device": p.device.type,
                               "requires_grad": bool(p.requires_grad), "sample": None, "value": None}
        if name in whole and p.numel() <= _WHOLE_GRADIENT_NUMEL:
            row["value"] = p.detach().clone()
        if p.device.type != "meta" and p.numel():
            gen = torch.Generator().manual_seed(seed + len(params))
            where = torch.randint(0, p.numel(), (samples,), generator=gen).to(p.device)
            row["sample"] = p.detach().reshape(-1)[where].clone()
        params.append(row)
    return {"modules": modules, "parameters": params}


def _forward_backward(model: torch.nn.Module, inputs: torch.Tensor, upstream: Any, capture: list[str],
                      result: dict[str, Any]) -> None:
    """An evaluation-mode forward pass; which parameters its autograd graph reaches (what a
    backward pass would give a ``.grad``), and the vector-Jacobian product with ``upstream`` for the
    small ones among them. Large reached parameters (a VGG left trainable) are named, not
    differentiated: their gradients would cost a second and half a gigabyte and say nothing more."""
    named = dict(model.named_modules())
    hooks = []
    for name in capture:
        if name in named:
            hooks.append(named[name].register_forward_hook(
                lambda module, args, out, name=name: result["captured"].__setitem__(name, _snapshot(args[0]))))
    model.eval()
    try:
        output = model(inputs.detach().clone())
        result["output"] = _snapshot(output)
        if type(output) is torch.Tensor and output.requires_grad:
            by_id = {id(p): name for name, p in model.named_parameters()}
            reached = [by_id[i] for i in _graph_leaves(output) if i in by_id]
            result["reached"] = sorted(reached)
            params = dict(model.named_parameters())
            small = [n for n in reached if params[n].numel() <= _WHOLE_GRADIENT_NUMEL]
            if upstream is not None and small and tuple(output.shape) == tuple(upstream.shape):
                grads = torch.autograd.grad(output, [params[n] for n in small],
                                            upstream.to(device=output.device, dtype=output.dtype), allow_unused=True)
                result["grads"] = {n: _snapshot(g) for n, g in zip(small, grads)}
    except Exception as error:  # noqa: BLE001 - reported as data: the model no longer fits together
        text = str(error).strip()
        result["forward_error"] = f"{type(error).__name__}: {text.splitlines()[0][:300] if text else ''}"
    finally:
        for hook in hooks:
            hook.remove()


def _graph_leaves(output: torch.Tensor) -> set[int]:
    """``id``s of the leaf tensors that ``output``'s autograd graph accumulates gradients into."""
    leaves: set[int] = set()
    seen: set[Any] = set()
    stack = [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad nodes hold their leaf
        if isinstance(variable, torch.Tensor):
            leaves.add(id(variable))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return leaves


#: What the episode loop passes to a tabular update, by parameter name.
_STEP_VALUES = ("s", "a", "r", "s_next", "done", "alpha", "gamma")


#: Convention name (``autograder/course/conventions.py``) -> harness; ``function`` is called by
#: the worker with its VJP arguments.
HARNESSES = {"grads_in_place": grads_in_place, "optimizer_state": optimizer_state,
             "table_update": table_update, "episode_loop": episode_loop, "recurrent_cell": recurrent_cell,
             "module_transform": module_transform}
