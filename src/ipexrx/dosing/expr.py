"""A small, safe arithmetic language for model files.

Model files are data written by pharmacometricians, not code: their formulas ("TVCL * (WT/70)**0.75")
are parsed with :mod:`ast` and only arithmetic, comparisons, a few named functions and known symbols are
accepted. The compiled function works on NumPy arrays (real or complex), which lets the estimator
differentiate predictions by complex step.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ModelError

_FUNCS = {"exp", "log", "sqrt", "ifelse", "abs"}
_ALLOWED_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load, ast.Call,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd,
    ast.Compare, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq, ast.BoolOp, ast.And, ast.Or,
)


def _ifelse(cond: Any, a: Any, b: Any) -> Any:
    import numpy as np

    return np.where(cond, a, b)


def _cmp(op: str, a: Any, b: Any) -> Any:
    """Comparisons look at real parts only, so that complex-step derivatives pass through them."""
    import numpy as np

    ra, rb = np.real(a), np.real(b)
    return {"<": ra < rb, "<=": ra <= rb, ">": ra > rb, ">=": ra >= rb, "==": ra == rb, "!=": ra != rb}[op]


def _abs(a: Any) -> Any:
    import numpy as np

    return np.where(np.real(a) < 0, -a, a)


_OPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


class _Rewriter(ast.NodeTransformer):
    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if len(node.ops) != 1:
            raise ModelError("chained comparisons (a < b < c) are not supported; write them with `and`")
        return ast.Call(
            func=ast.Name(id="_cmp", ctx=ast.Load()),
            args=[ast.Constant(_OPS[type(node.ops[0])]), node.left, node.comparators[0]],
            keywords=[],
        )

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        fn = "_and" if isinstance(node.op, ast.And) else "_or"
        out = node.values[0]
        for v in node.values[1:]:
            out = ast.Call(func=ast.Name(id=fn, ctx=ast.Load()), args=[out, v], keywords=[])
        return out


class Expr:
    """A compiled formula. ``symbols`` lists the names it reads, in order of appearance."""

    def __init__(self, source: str, known: set[str] | None = None, where: str = "") -> None:
        self.source = str(source)
        try:
            tree = ast.parse(self.source, mode="eval")
        except SyntaxError as exc:
            raise ModelError(f"{where}: cannot parse formula {self.source!r}: {exc.msg}") from None
        names: list[str] = []
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED_NODES):
                raise ModelError(
                    f"{where}: formula {self.source!r} uses {type(node).__name__}, which is not allowed "
                    "(expected arithmetic, comparisons, and exp/log/sqrt/abs/ifelse)"
                )
            if isinstance(node, ast.Call):
                if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS or node.keywords:
                    raise ModelError(f"{where}: formula {self.source!r} calls an unknown function")
            elif isinstance(node, ast.Name) and node.id not in _FUNCS and node.id not in names:
                names.append(node.id)
            elif isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
                raise ModelError(f"{where}: formula {self.source!r} contains a non-numeric constant")
        if known is not None:
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ModelError(
                    f"{where}: formula {self.source!r} uses unknown symbol(s) {', '.join(unknown)}; "
                    f"known: {', '.join(sorted(known))}"
                )
        self.symbols = tuple(names)
        tree = ast.fix_missing_locations(_Rewriter().visit(tree))
        self._code = compile(tree, f"<formula {where}>", "eval")
        constant = not names
        self.constant_value: float | None = None
        if constant:
            self.constant_value = float(self({}))

    def __call__(self, env: Mapping[str, Any]) -> Any:
        import numpy as np

        g: dict[str, Any] = {
            "__builtins__": {}, "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "abs": _abs,
            "ifelse": _ifelse, "_cmp": _cmp, "_and": np.logical_and, "_or": np.logical_or,
        }
        return eval(self._code, g, dict(env))  # noqa: S307  (AST checked against a whitelist above)

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"


def compile_expr(source: str | float | int, known: set[str] | None = None, where: str = "") -> Expr:
    return Expr(str(source), known, where)


Func = Callable[[Mapping[str, Any]], Any]
