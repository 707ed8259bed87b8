"""What the hidden suites of the two tabular TD updates (``q_learning_update``, ``sarsa_update``)
share: one update of ``Q[s, a]`` in place, returning the TD error, called through the exercise's
``TableUpdate`` convention. Each suite declares a :class:`TableSuite` (its cases, its reference
update, its named mistakes and hints); the checks of the single-update tests live here once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from autograder.grading.compare import expect, expect_close, expect_equal, expect_like, expect_scalar_close
from autograder.suites._common import FLOAT32, FLOAT64, dtype_text

Args = dict[str, Any]


#: Both updates change the caller's table: the one hint of their in-place tests.
HINT_IN_PLACE = ("update the table you are given (Q[s, a] += ...); Q = Q.clone() or torch.tensor(Q) makes a copy the "
                 "caller never sees, and returning a new table does not change Q")


@dataclass(frozen=True)
class TableSuite:
    exercise: str
    n_states: int
    n_actions: int
    case: Callable[..., Args]  # (rng, done, dtype=..., self_loop=...) -> the call's arguments
    expected: Callable[[Args], tuple[torch.Tensor, float]]  # the reference: (Q after, TD error)
    table_mistakes: Callable[[Args], dict[str, Any]]  # named mistakes of the table
    td_mistakes: Callable[[Args], dict[str, float]]  # named mistakes of the returned TD error
    hint_update: str
    hint_terminal: str
    hint_td: str
    hint_only: str

    def run(self, student: Any, args: Args, device: str) -> dict[str, Any]:
        return student.run(self.exercise, args, device=device)

    def describe(self, args: Args) -> str:
        kind = "terminal" if args["done"] else "non-terminal"
        loop = ", s_next == s" if args["s"] == args["s_next"] else ""
        return (f"a {kind} update of a {dtype_text(args['Q'].dtype)} table of shape "
                f"({self.n_states}, {self.n_actions}){loop}")

    def table_after(self, result: dict[str, Any], args: Args, device: str) -> torch.Tensor:
        return expect_like(result["Q_after"], shape=(self.n_states, self.n_actions), dtype=FLOAT64, device=device,
                           quantity=f"Q after {self.describe(args)}")

    def expect_table(self, result: dict[str, Any], args: Args, device: str, exercise: Any, hint: str) -> None:
        want, _ = self.expected(args)
        expect_close(result["Q_after"], want.to(device), quantity=f"Q after {self.describe(args)}", exercise=exercise,
                     hint=hint, mistakes=self.table_mistakes(args))

    # ---------------------------------------------------------------------- the shared tests
    def check_update(self, student: Any, rng: torch.Generator, device: str, exercise: Any) -> None:
        for dtype in (FLOAT64, FLOAT32):
            args = self.case(rng, done=False, dtype=dtype)
            self.expect_table(self.run(student, args, device), args, device, exercise, self.hint_update)

    def check_terminal(self, student: Any, rng: torch.Generator, device: str, exercise: Any) -> None:
        args = self.case(rng, done=True)
        self.expect_table(self.run(student, args, device), args, device, exercise, self.hint_terminal)

    def check_td_error(self, student: Any, rng: torch.Generator, device: str, exercise: Any) -> None:
        hint = self.hint_td
        for done in (False, True):
            args = self.case(rng, done=done)
            result = self.run(student, args, device)
            want_Q, td = self.expected(args)
            s, a = args["s"], args["a"]
            target = td + float(args["Q"][s, a])
            expect_scalar_close(result["returned"], td, quantity=f"returned value of {self.describe(args)}",
                                exercise=exercise, hint=hint, mistakes={
                                    "the TD error after the update (target minus the new Q[s, a]): " + hint:
                                        (1 - args["alpha"]) * td,
                                    "alpha times the TD error (the change of Q[s, a]): " + hint: args["alpha"] * td,
                                    "the new value of Q[s, a]: " + hint: float(want_Q[s, a]),
                                    "the target: " + hint: target,
                                    "Q[s, a] - target (the sign flipped): " + hint: -td,
                                    **self.td_mistakes(args),
                                })

    def check_only_entry_changes(self, student: Any, rng: torch.Generator, device: str, exercise: Any) -> None:
        for case in (dict(done=False), dict(done=False, self_loop=True), dict(done=True)):
            args = self.case(rng, **case)
            result = self.run(student, args, device)
            others = self.table_after(result, args, device).detach().cpu().clone()
            s, a = args["s"], args["a"]
            others[s, a] = args["Q"][s, a]  # everything but Q[s, a] must be exactly as before
            expect_equal(others, args["Q"], quantity=f"Q without the entry Q[s, a], after {self.describe(args)}",
                         hint=self.hint_only)
            # leaving the rest alone is only worth a point when Q[s, a] itself is updated
            self.expect_table(result, args, device, exercise, self.hint_update)

    def check_in_place(self, student: Any, rng: torch.Generator, device: str, exercise: Any) -> None:
        """The caller's own table holds the update: the same storage, Q[s, a] changed, and changed
        right (an in-place change that is not the update earns nothing)."""
        args = self.case(rng, done=False)
        result = self.run(student, args, device)
        expect(result["same_object"] is True, "Q's storage was replaced during the update", hint=HINT_IN_PLACE)
        after = self.table_after(result, args, device)
        s, a = args["s"], args["a"]
        expect(bool(after[s, a].cpu() != args["Q"][s, a]),
               "Q[s, a] is unchanged after the call: Q was not updated in place", hint=HINT_IN_PLACE)
        self.expect_table(result, args, device, exercise, HINT_IN_PLACE)
