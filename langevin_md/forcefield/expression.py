"""OpenMM's algebraic expression language (Lepton), parsed into a batched torch program.

OpenMM's custom forces describe energies as text such as
``"k*(r-r0)^2; k=0.5*kb"``. This module parses that text with its own recursive-descent parser
(following the grammar of OpenMM's Lepton library, not sharing its code) into a small program
of tensor operations. The program is evaluated on whatever tensors the caller binds to its
variables, so one evaluation covers all walkers and all bonds/pairs/particles at once. The
program is plain torch, so it runs on CPU or CUDA, in float32 or float64, under autograd and
under ``torch.compile``. Derivatives are also available symbolically, by Lepton's rules:
:meth:`Expression.derivative` (forward, one variable) and :meth:`Expression.with_gradient`
(reverse accumulation: value and all requested derivatives in one :class:`Program`, nodes
shared), which the custom-force terms use for closed-form forces.

Grammar and semantics (checked against Lepton's ``Parser.cpp`` and ``Operation.h``):

- Operators ``+ - * /`` are left-associative; ``^`` (power) binds tighter and is
  right-associative (``a^b^c = a^(b^c)``). Unary minus binds tighter than ``* /`` and looser
  than ``^`` (``-x^2 = -(x^2)``). There is no unary plus.
- Numbers: ``12``, ``1.5``, ``.5``, ``1e-3``, ``2.5E+4``.
- ``expr; a=...; b=...``: intermediate definitions. As in Lepton, a definition is visible to
  the main expression and to the definitions written *before* it (definitions are processed
  from the last one backwards). Definitions are substituted, so a definition named like a
  variable (``r``) shadows it.
- Functions: ``sqrt exp log sin cos sec csc tan cot asin acos atan atan2 sinh cosh tanh erf
  erfc step delta square cube recip min max abs floor ceil select``, plus any custom
  (tabulated or geometric) functions the caller declares; custom names take precedence, as in
  Lepton. ``step(x) = 1 if x >= 0 else 0`` (so ``step(0) = 1``), ``delta(x) = 1 if x == 0 else
  0``, ``select(x, a, b) = a if x != 0 else b``. ``step``, ``delta``, ``floor``, ``ceil`` have
  zero derivative.

Derivatives follow Lepton's where it matters: ``min(x, y)`` differentiates as ``y`` when
``x >= y`` (else ``x``), ``max(x, y)`` as ``x`` when ``x >= y``, and ``abs(x)`` has derivative
``+1`` at ``x = 0``. Where Lepton's derivative is infinite, so is ours (``sqrt`` at 0, as in
OpenMM; we do not mask it, since OpenMM would produce the same non-finite force). One known
difference: reverse-mode differentiation (autograd, and :func:`gradient`) multiplies the zero
adjoint that ``select`` (and ``min``/``max``) sends into the branch it did not pick by that
branch's local derivative, so an *unpicked* branch with an infinite derivative
(``select(x, 1, sqrt(x))`` at ``x = 0``) gives a NaN force where Lepton's forward-mode
``select(x, da, db)`` stays finite. Expressions used by force fields do not do this; write such
guards with a finite unpicked branch.

Constant subexpressions are folded at parse time in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

__all__ = ["Node", "Expression", "Program", "parse", "gradient", "derivative_name", "STANDARD_FUNCTIONS"]

#: Arity of each built-in function of the expression language.
STANDARD_FUNCTIONS: dict[str, int] = {
    "sqrt": 1, "exp": 1, "log": 1, "sin": 1, "cos": 1, "sec": 1, "csc": 1, "tan": 1,
    "cot": 1, "asin": 1, "acos": 1, "atan": 1, "atan2": 2, "sinh": 1, "cosh": 1, "tanh": 1,
    "erf": 1, "erfc": 1, "step": 1, "delta": 1, "square": 1, "cube": 1, "recip": 1,
    "min": 2, "max": 2, "abs": 1, "floor": 1, "ceil": 1, "select": 3,
}

_OPERATORS = "+-*/^"
# Precedence and associativity of the binary operators, as in Lepton.
_PRECEDENCE = {"+": 0, "-": 0, "*": 1, "/": 1, "^": 3}
_LEFT_ASSOCIATIVE = {"+": True, "-": True, "*": True, "/": True, "^": False}
_UNARY_MINUS_PRECEDENCE = 2


@dataclass(frozen=True, eq=False)
class Node:
    """One node of a parsed expression.

    ``op`` is ``"const"`` (``value`` holds the number), ``"var"`` (``name`` holds the variable),
    a binary operator ``+ - * / ^``, ``"neg"``, ``"call"`` (a built-in function: ``name``
    holds it, ``args`` the arguments) or ``"custom"`` (a function the caller implements).
    Nodes are immutable and may be shared (definitions are substituted by reference), so a
    program evaluates a shared node once.
    """

    op: str
    args: tuple["Node", ...] = ()
    value: float = 0.0
    name: str = ""


def _const(value: float) -> Node:
    return Node("const", value=float(value))


# ---------------------------------------------------------------------------------------------
# Tokeniser and parser
# ---------------------------------------------------------------------------------------------

_NUMBER, _OPERATOR, _VARIABLE, _FUNCTION, _LPAREN, _RPAREN, _COMMA = range(7)


def _tokenize(text: str) -> list[tuple[int, str]]:
    tokens: list[tuple[int, str]] = []
    pos, n = 0, len(text)
    while pos < n:
        c = text[pos]
        if c.isspace():
            pos += 1
            continue
        if c == "(":
            tokens.append((_LPAREN, c))
            pos += 1
        elif c == ")":
            tokens.append((_RPAREN, c))
            pos += 1
        elif c == ",":
            tokens.append((_COMMA, c))
            pos += 1
        elif c in _OPERATORS:
            tokens.append((_OPERATOR, c))
            pos += 1
        elif c == "." or c.isdigit():
            end, seen_dot, seen_exp = pos + 1, c == ".", False
            while end < n:
                d = text[end]
                if d.isdigit():
                    end += 1
                elif d == "." and not seen_dot:
                    seen_dot = True
                    end += 1
                elif d in "eE" and not seen_exp:
                    seen_exp = True
                    end += 2 if end + 1 < n and text[end + 1] in "+-" else 1
                else:
                    break
            tokens.append((_NUMBER, text[pos:end]))
            pos = end
        else:
            # A name runs until an operator, comma, parenthesis or space; a name followed
            # directly by "(" is a function call.
            end = pos
            while end < n and not (text[end] in _OPERATORS or text[end] in ",()" or text[end].isspace()):
                end += 1
            if end < n and text[end] == "(":
                tokens.append((_FUNCTION, text[pos:end]))
                end += 1
            else:
                tokens.append((_VARIABLE, text[pos:end]))
            pos = end
    return tokens


#: Longest expression text parsed (characters). Real force fields stay in the thousands.
MAX_EXPRESSION_LENGTH = 200_000
#: Deepest nesting (parentheses, operator chains, unary minus, definitions substituted into
#: each other) accepted. The parser and the symbolic derivative recurse once or twice per
#: level, so this keeps both far from Python's recursion limit; real expressions (OpenMM's
#: GB models included) nest a few tens of levels.
MAX_EXPRESSION_DEPTH = 200


class _Parser:
    def __init__(self, tokens, definitions: Mapping[str, Node], functions: Mapping[str, int]):
        self.tokens = tokens
        self.pos = 0
        self.definitions = definitions
        self.functions = functions
        self.depth = 0

    def parse(self, precedence: int = 0) -> Node:
        self.depth += 1
        try:
            if self.depth > MAX_EXPRESSION_DEPTH:
                raise ValueError(f"nested more than {MAX_EXPRESSION_DEPTH} levels deep")
            return self._parse(precedence)
        finally:
            self.depth -= 1

    def _parse(self, precedence: int) -> Node:
        if self.pos == len(self.tokens):
            raise ValueError("unexpected end of expression")
        kind, text = self.tokens[self.pos]
        self.pos += 1
        if kind == _NUMBER:
            try:
                result = _const(float(text))
            except ValueError:
                raise ValueError(f"malformed number {text!r}") from None
        elif kind == _VARIABLE:
            result = self.definitions.get(text) or Node("var", name=text)
        elif kind == _LPAREN:
            result = self.parse(0)
            self._expect_rparen()
        elif kind == _FUNCTION:
            args = [self.parse(0)]
            while self.pos < len(self.tokens) and self.tokens[self.pos][0] == _COMMA:
                self.pos += 1
                args.append(self.parse(0))
            self._expect_rparen()
            result = self._call(text, args)
        elif kind == _OPERATOR and text == "-":
            result = _fold(Node("neg", (self.parse(_UNARY_MINUS_PRECEDENCE),)))
        else:
            raise ValueError(f"unexpected token {text!r}")
        while self.pos < len(self.tokens) and self.tokens[self.pos][0] == _OPERATOR:
            op = self.tokens[self.pos][1]
            if _PRECEDENCE[op] < precedence:
                break
            self.pos += 1
            rhs = self.parse(_PRECEDENCE[op] + 1 if _LEFT_ASSOCIATIVE[op] else _PRECEDENCE[op])
            result = _fold(Node(op, (result, rhs)))
        return result

    def _expect_rparen(self):
        if self.pos == len(self.tokens) or self.tokens[self.pos][0] != _RPAREN:
            raise ValueError("unbalanced parentheses")
        self.pos += 1

    def _call(self, name: str, args: list[Node]) -> Node:
        arity = self.functions.get(name, STANDARD_FUNCTIONS.get(name))
        if arity is None:
            raise ValueError(f"unknown function {name!r}")
        if len(args) != arity:
            raise ValueError(f"function {name!r} takes {arity} argument(s), got {len(args)}")
        if name in self.functions:
            return Node("custom", tuple(args), name=name)
        return _fold(Node("call", tuple(args), name=name))


def parse(text: str, functions: Mapping[str, int] | None = None) -> "Expression":
    """Parse an OpenMM expression.

    Parameters
    ----------
    text : str
        The expression, with optional intermediate definitions after ``;``.
    functions : mapping of str to int, optional
        Extra (custom) functions the expression may call, with their number of arguments:
        tabulated functions, or geometric ones such as ``distance`` that the caller rewrites.

    Returns
    -------
    Expression

    Raises
    ------
    ValueError
        If the text is not a valid expression; the message quotes it and says what is wrong.
    TypeError
        If ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"expression must be a str, got {type(text).__name__}")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ValueError(f"cannot parse expression {text[:80]!r}...: it is {len(text)} characters long; at most "
                         f"{MAX_EXPRESSION_LENGTH} are read")
    functions = dict(functions or {})
    try:
        parts = text.split(";")
        definitions: dict[str, Node] = {}
        # Lepton parses the definitions from the last one backwards, each seeing the ones
        # after it.
        for part in reversed(parts[1:]):
            part = part.strip()
            if not part:
                continue
            name, eq, body = part.partition("=")
            name = name.strip()
            if not eq or not name:
                raise ValueError(f"definition {part!r} does not have the form 'name = expression'")
            definitions[name] = _parse_one(body, definitions, functions)
        root = _parse_one(parts[0], definitions, functions)
    except ValueError as err:
        shown = repr(text) if len(text) <= 500 else f"{text[:240]!r}...{text[-240:]!r} ({len(text)} characters)"
        raise ValueError(f"cannot parse expression {shown}: {err}") from None
    return Expression(text, root, functions)


def _parse_one(text: str, definitions, functions) -> Node:
    tokens = _tokenize(text)
    parser = _Parser(tokens, definitions, functions)
    node = parser.parse(0)
    if parser.pos != len(tokens):
        raise ValueError(f"unexpected text {tokens[parser.pos][1]!r} after a complete expression")
    # definitions substituted into each other deepen the tree without deepening the text
    if _depth(node) > MAX_EXPRESSION_DEPTH:
        raise ValueError(f"nested more than {MAX_EXPRESSION_DEPTH} levels deep (counting the definitions "
                         "it uses)")
    return node


def _depth(root: Node) -> int:
    """Levels of the tree under ``root`` (iterative; shared nodes counted once)."""
    depth: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in depth:
            continue
        if expanded or not node.args:
            depth[id(node)] = 1 + max((depth[id(a)] for a in node.args), default=0)
        else:
            stack.append((node, True))
            stack.extend((a, False) for a in node.args if id(a) not in depth)
    return depth[id(root)]


# ---------------------------------------------------------------------------------------------
# Constant folding (float64, C semantics: inf/nan instead of exceptions)
# ---------------------------------------------------------------------------------------------


def _fold(node: Node) -> Node:
    if node.args and all(a.op == "const" for a in node.args):
        with torch.no_grad():
            args = [torch.tensor(a.value, dtype=torch.float64) for a in node.args]
            return _const(float(_apply(node, args, args[0])))
    return node


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def _as_tensor(value, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def _power(base, exponent):
    # A constant exponent is passed as a Python number so that negative bases with integer
    # exponents work and autograd never differentiates with respect to the exponent (whose
    # derivative needs log(base), NaN for base < 0, although it is multiplied by zero).
    return torch.pow(base, exponent)


_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sqrt": torch.sqrt,
    "exp": torch.exp,
    "log": torch.log,
    "sin": torch.sin,
    "cos": torch.cos,
    "sec": lambda x: 1.0 / torch.cos(x),
    "csc": lambda x: 1.0 / torch.sin(x),
    "tan": torch.tan,
    "cot": lambda x: 1.0 / torch.tan(x),
    "asin": torch.asin,
    "acos": torch.acos,
    "atan": torch.atan,
    "sinh": torch.sinh,
    "cosh": torch.cosh,
    "tanh": torch.tanh,
    "erf": torch.erf,
    "erfc": torch.erfc,
    # step, delta, floor, ceil have zero derivative in Lepton; detach so that autograd agrees
    # (torch.floor's gradient is already zero; comparisons carry none).
    "step": lambda x: (x >= 0).to(x.dtype),
    "delta": lambda x: (x == 0).to(x.dtype),
    "square": lambda x: x * x,
    "cube": lambda x: x * x * x,
    "recip": lambda x: 1.0 / x,
    # Lepton: d|x|/dx = 2*step(x) - 1, i.e. +1 at 0.
    "abs": lambda x: torch.where(x >= 0, x, -x),
    "floor": lambda x: torch.floor(x).detach(),
    "ceil": lambda x: torch.ceil(x).detach(),
}


def _apply(node: Node, args: list, like: torch.Tensor):
    """Apply one node's operation to already evaluated arguments (tensors or Python floats)."""
    op = node.op
    if op == "+":
        return args[0] + args[1]
    if op == "-":
        return args[0] - args[1]
    if op == "*":
        return args[0] * args[1]
    if op == "/":
        a, b = args
        if not isinstance(a, torch.Tensor):
            return _as_tensor(a, like) / b
        return a / b
    if op == "^":
        a, b = args
        if not isinstance(a, torch.Tensor):
            a = _as_tensor(a, like)
        return _power(a, b)
    if op == "neg":
        return -args[0]
    name = node.name
    if name in _UNARY:
        return _UNARY[name](_as_tensor(args[0], like))
    if name == "atan2":
        return torch.atan2(_as_tensor(args[0], like), _as_tensor(args[1], like))
    if name == "min":
        x, y = _as_tensor(args[0], like), _as_tensor(args[1], like)
        return torch.where(x >= y, y, x)
    if name == "max":
        x, y = _as_tensor(args[0], like), _as_tensor(args[1], like)
        return torch.where(x >= y, x, y)
    if name == "select":
        c = _as_tensor(args[0], like)
        return torch.where(c != 0, _as_tensor(args[1], like), _as_tensor(args[2], like))
    raise ValueError(f"no implementation for function {name!r}")  # custom: handled by caller


class Program:
    """Several expression trees compiled into one linear list of tensor operations.

    Nodes shared between the trees (a derivative reuses the nodes of the expression it was
    taken from) are evaluated once, as Lepton's ``ExpressionSet`` does.

    Parameters
    ----------
    roots : sequence of Node
    functions : mapping of str to int
        Custom functions the trees may call, with their arities.
    text : str
        Source text, for messages.
    """

    def __init__(self, roots: Sequence[Node], functions: Mapping[str, int], text: str = ""):
        self.text = text
        self.functions = dict(functions)
        self._instructions: list[tuple[Node, tuple[int, ...]]] = []
        self._by_structure: dict[tuple, int] = {}
        slots: dict[int, int] = {}
        self._outputs = [self._compile(root, slots) for root in roots]
        self.variables = frozenset(n.name for n, _ in self._instructions if n.op == "var")
        # Slots to release after each instruction (their last use): keeps the working set, and
        # so the allocator's footprint, small when the tensors are large.
        last_use = {}
        for k, (_, arg_slots) in enumerate(self._instructions):
            for i in arg_slots:
                last_use[i] = k
        outputs = set(self._outputs)
        self._release: list[tuple[int, ...]] = [() for _ in self._instructions]
        for i, k in last_use.items():
            if i not in outputs:
                self._release[k] += (i,)

    def _compile(self, node: Node, slots: dict[int, int]) -> int:
        # Post-order walk; shared nodes get one slot. Iterative, so deep trees cannot overflow
        # Python's recursion limit.
        stack = [(node, False)]
        while stack:
            current, expanded = stack.pop()
            if id(current) in slots:
                continue
            if expanded or not current.args:
                arg_slots = tuple(slots[id(a)] for a in current.args)
                # Structurally equal computations (derivative rules rebuild e.g. square(a) in
                # several places) share one slot.
                value = (current.value, math.copysign(1.0, current.value)) if current.op == "const" else None
                key = (current.op, current.name, value, arg_slots)
                if key not in self._by_structure:
                    self._instructions.append((current, arg_slots))
                    self._by_structure[key] = len(self._instructions) - 1
                slots[id(current)] = self._by_structure[key]
            else:
                stack.append((current, True))
                stack.extend((a, False) for a in reversed(current.args) if id(a) not in slots)
        return slots[id(node)]

    def __len__(self) -> int:
        return len(self._instructions)

    def __call__(
        self,
        variables: Mapping[str, torch.Tensor],
        functions: Mapping[str, Callable[..., torch.Tensor]] | None = None,
    ) -> list[torch.Tensor]:
        """Values of all roots (see :meth:`Expression.evaluate`)."""
        missing = self.variables.difference(variables)
        if missing:
            raise ValueError(f"expression {self.text!r} needs values for variables {sorted(missing)}")
        functions = functions or {}
        like = next((v for v in variables.values() if isinstance(v, torch.Tensor)), None)
        if like is None:
            like = torch.zeros((), dtype=torch.get_default_dtype())
        values: list = []
        for (node, arg_slots), release in zip(self._instructions, self._release):
            if node.op == "const":
                values.append(node.value)
            elif node.op == "var":
                values.append(variables[node.name])
            elif node.op == "custom":
                fn = functions.get(node.name)
                if fn is None:
                    raise ValueError(f"expression {self.text!r} calls {node.name!r}, which has no implementation")
                values.append(fn(*[_as_tensor(values[i], like) for i in arg_slots]))
            else:
                values.append(_apply(node, [values[i] for i in arg_slots], like))
            for i in release:
                values[i] = None
        return [_as_tensor(values[i], like) for i in self._outputs]


class Expression:
    """A parsed expression, evaluated as a linear program of tensor operations.

    Attributes
    ----------
    text : str
        The source text.
    root : Node
        The expression tree with definitions substituted and constants folded.
    functions : dict of str to int
        Custom functions declared when parsing, with their arities.
    variables : frozenset of str
        The free variables the expression needs.
    """

    def __init__(self, text: str, root: Node, functions: Mapping[str, int]):
        self.text = text
        self.root = root
        self.functions = dict(functions)
        self._program = Program([root], self.functions, text)
        self.variables = self._program.variables

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def replace(self, rewrite: Callable[[Node], Node | None]) -> "Expression":
        """A copy in which every node for which ``rewrite`` returns a node is replaced by it.

        Used to turn geometric calls such as ``distance(p1, p2)`` into variables.
        """
        memo: dict[int, Node] = {}

        def walk(node: Node) -> Node:
            if id(node) in memo:
                return memo[id(node)]
            new = rewrite(node)
            if new is None:
                args = tuple(walk(a) for a in node.args)
                new = node if all(a is b for a, b in zip(args, node.args)) else Node(node.op, args, node.value, node.name)
            memo[id(node)] = new
            return new

        return Expression(self.text, walk(self.root), self.functions)

    def derivative(self, variable: str) -> "Expression":
        """The symbolic derivative with respect to ``variable``, by Lepton's rules.

        A custom function ``f`` of ``k`` arguments differentiates into calls of ``f'0``, ...,
        ``f'(k-1)`` (its partial derivatives), which the caller implements.
        """
        functions = dict(self.functions)
        for name, arity in self.functions.items():
            for k in range(arity):
                functions[derivative_name(name, k)] = arity
        return Expression(f"d({self.text})/d{variable}", _differentiate(self.root, variable, {}), functions)

    def with_gradient(self, wrt: Sequence[str]) -> Program:
        """One program computing ``[value, d/d wrt[0], d/d wrt[1], ...]`` (reverse mode)."""
        functions = dict(self.functions)
        for name, arity in self.functions.items():
            for k in range(arity):
                functions[derivative_name(name, k)] = arity
        return Program([self.root, *gradient(self.root, wrt)], functions, self.text)

    def evaluate(
        self,
        variables: Mapping[str, torch.Tensor],
        functions: Mapping[str, Callable[..., torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Evaluate on tensors; shapes broadcast as in torch.

        Parameters
        ----------
        variables : mapping of str to torch.Tensor
            A tensor for every name in :attr:`variables` (all of one dtype and device).
        functions : mapping of str to callable, optional
            An implementation of every custom function the expression calls, taking and
            returning tensors.

        Returns
        -------
        torch.Tensor
            The value, broadcast over the shapes of the variables used (a 0-d tensor if the
            expression is constant).
        """
        return self._program(variables, functions)[0]


def derivative_name(function: str, argument: int) -> str:
    """Name of the partial derivative of custom ``function`` in its ``argument``-th argument."""
    return f"{function}'{argument}"


# ---------------------------------------------------------------------------------------------
# Symbolic differentiation (Lepton's rules, with zero terms pruned)
# ---------------------------------------------------------------------------------------------

_ZERO, _ONE = _const(0.0), _const(1.0)


def _is(node: Node, value: float) -> bool:
    return node.op == "const" and node.value == value


def _add(a: Node, b: Node) -> Node:
    if _is(a, 0.0):
        return b
    if _is(b, 0.0):
        return a
    return _fold(Node("+", (a, b)))


def _sub(a: Node, b: Node) -> Node:
    if _is(b, 0.0):
        return a
    if _is(a, 0.0):
        return _neg(b)
    return _fold(Node("-", (a, b)))


def _neg(a: Node) -> Node:
    return _fold(Node("neg", (a,)))


def _mul(a: Node, b: Node) -> Node:
    if _is(a, 0.0) or _is(b, 0.0):
        return _ZERO
    if _is(a, 1.0):
        return b
    if _is(b, 1.0):
        return a
    return _fold(Node("*", (a, b)))


def _div(a: Node, b: Node) -> Node:
    if _is(a, 0.0):
        return _ZERO
    return _fold(Node("/", (a, b)))


def _fn(name: str, *args: Node) -> Node:
    return _fold(Node("call", tuple(args), name=name))


def _differentiate(node: Node, variable: str, memo: dict[int, Node]) -> Node:
    key = id(node)
    if key not in memo:
        memo[key] = _derivative_of(node, variable, memo)
    return memo[key]


def _derivative_of(node: Node, v: str, memo) -> Node:
    op = node.op
    if op == "const":
        return _ZERO
    if op == "var":
        return _ONE if node.name == v else _ZERO
    return _chain(node, [_differentiate(a, v, memo) for a in node.args])


def gradient(root: Node, wrt: Sequence[str]) -> list[Node]:
    """Derivatives of ``root`` in each variable of ``wrt``, by symbolic reverse accumulation.

    The adjoint of every node is built as an expression that reuses the nodes of ``root``, so
    compiling ``[root, *gradient(root, wrt)]`` into one :class:`Program` costs about as much
    as reverse-mode automatic differentiation, whatever the number of variables.
    """
    order: list[Node] = []
    seen: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in seen:
            continue
        if expanded or not node.args:
            seen.add(id(node))
            order.append(node)
        else:
            stack.append((node, True))
            stack.extend((a, False) for a in reversed(node.args) if id(a) not in seen)
    # Adjoints flow only into subtrees that contain a variable of `wrt`: parameter-only
    # subexpressions need none.
    wanted = set(wrt)
    depends: dict[int, bool] = {}
    for node in order:
        depends[id(node)] = (node.op == "var" and node.name in wanted) or any(depends[id(a)] for a in node.args)
    adjoint: dict[int, Node] = {id(root): _ONE}
    for node in reversed(order):
        upstream = adjoint.get(id(node))
        if upstream is None or not node.args or _is(upstream, 0.0):
            continue
        for k, arg in enumerate(node.args):
            if not depends[id(arg)]:
                continue
            seed = [_ONE if i == k else _ZERO for i in range(len(node.args))]
            contribution = _mul(upstream, _chain(node, seed))
            adjoint[id(arg)] = _add(adjoint[id(arg)], contribution) if id(arg) in adjoint else contribution
    out = []
    for name in wrt:
        total = _ZERO
        for node in order:
            if node.op == "var" and node.name == name and id(node) in adjoint:
                total = _add(total, adjoint[id(node)])
        out.append(total)
    return out


def _chain(node: Node, d: list[Node]) -> Node:
    """Derivative of ``node`` given the derivatives ``d`` of its arguments (Lepton's rules)."""
    op = node.op
    if all(_is(di, 0.0) for di in d):
        return _ZERO
    a = node.args[0]
    da = d[0]
    if op == "+":
        return _add(da, d[1])
    if op == "-":
        return _sub(da, d[1])
    if op == "*":
        return _add(_mul(da, node.args[1]), _mul(a, d[1]))
    if op == "/":
        b = node.args[1]
        return _sub(_div(da, b), _mul(_div(a, _mul(b, b)), d[1]))
    if op == "neg":
        return _neg(da)
    if op == "^":
        b = node.args[1]
        # d(a^b) = b*a^(b-1)*da + log(a)*a^b*db; a constant exponent keeps the first term only.
        first = _mul(_mul(b, _fold(Node("^", (a, _sub(b, _ONE))))), da)
        return _add(first, _mul(_mul(_fn("log", a), node), d[1]))
    name = node.name
    if op == "custom":
        total = _ZERO
        for k, dk in enumerate(d):
            total = _add(total, _mul(Node("custom", node.args, name=derivative_name(name, k)), dk))
        return total
    if name == "sqrt":
        return _mul(_div(_const(0.5), node), da)
    if name == "exp":
        return _mul(node, da)
    if name == "log":
        return _div(da, a)
    if name == "sin":
        return _mul(_fn("cos", a), da)
    if name == "cos":
        return _neg(_mul(_fn("sin", a), da))
    if name == "sec":
        return _mul(_mul(node, _fn("tan", a)), da)
    if name == "csc":
        return _neg(_mul(_mul(node, _fn("cot", a)), da))
    if name == "tan":
        return _mul(_fn("square", _fn("sec", a)), da)
    if name == "cot":
        return _neg(_mul(_fn("square", _fn("csc", a)), da))
    if name == "asin":
        return _div(da, _fn("sqrt", _sub(_ONE, _fn("square", a))))
    if name == "acos":
        return _neg(_div(da, _fn("sqrt", _sub(_ONE, _fn("square", a)))))
    if name == "atan":
        return _div(da, _add(_ONE, _fn("square", a)))
    if name == "atan2":
        y, x = node.args
        return _div(_sub(_mul(x, da), _mul(y, d[1])), _add(_fn("square", x), _fn("square", y)))
    if name == "sinh":
        return _mul(_fn("cosh", a), da)
    if name == "cosh":
        return _mul(_fn("sinh", a), da)
    if name == "tanh":
        return _mul(_sub(_ONE, _fn("square", node)), da)
    if name == "erf":
        return _mul(_mul(_const(2.0 / math.sqrt(math.pi)), _fn("exp", _neg(_fn("square", a)))), da)
    if name == "erfc":
        return _mul(_mul(_const(-2.0 / math.sqrt(math.pi)), _fn("exp", _neg(_fn("square", a)))), da)
    if name in ("step", "delta", "floor", "ceil"):
        return _ZERO
    if name == "square":
        return _mul(_mul(_const(2.0), a), da)
    if name == "cube":
        return _mul(_mul(_const(3.0), _fn("square", a)), da)
    if name == "recip":
        return _neg(_div(da, _fn("square", a)))
    if name == "min":
        return _fn("select", _fn("step", _sub(a, node.args[1])), d[1], da)
    if name == "max":
        return _fn("select", _fn("step", _sub(a, node.args[1])), da, d[1])
    if name == "abs":
        return _mul(da, _sub(_mul(_const(2.0), _fn("step", a)), _ONE))
    if name == "select":
        return _fn("select", a, d[1], d[2])
    raise ValueError(f"cannot differentiate function {name!r}")
