"""Hand-written lexer and precedence-climbing parser for the condition language.

Hand-written rather than generated so that every error names what was expected, points at
the offending character, and can suggest the usual fix (``=`` for ``==``, ``and`` for ``&&``).

Grammar (CEL precedence, lowest first)::

    expr     := or ("?" expr ":" expr)?
    or       := and ("||" and)*
    and      := rel ("&&" rel)*
    rel      := add (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in") add)*
    add      := mul (("+" | "-") mul)*
    mul      := unary (("*" | "/" | "%") unary)*
    unary    := ("!" | "-") unary | member
    member   := primary ("." IDENT ("(" args ")")?)*
    primary  := literal | IDENT ("(" args ")")? | "(" expr ")" | "[" args "]"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from ordinance.policy.cel.ast import (
    Binary,
    Call,
    Comprehension,
    Conditional,
    Expr,
    Ident,
    ListLit,
    Literal,
    Select,
    Unary,
    children,
)

# Limits on one condition (docs/policy-language.md, "Limits"). Every later stage — type
# checking, code generation, printing, the Z3 encoding — walks the tree recursively, and
# Python's own parser refuses generated code nested past 200 parentheses; bounding the
# tree here means no condition can reach any of them with a RecursionError.
MAX_CONDITION_LENGTH = 32_768  # characters of condition text
MAX_DEPTH = 64  # height of the syntax tree: a chain of n `&&` is n levels, like n parentheses
MAX_NODES = 4_096  # terms (tree nodes) in one condition
MAX_NUMBER_DIGITS = 64  # digits of one number literal (money, counts and limits need far fewer)


class ConditionSyntaxError(Exception):
    """Raised with an offset into the condition text; the loader turns it into a located error."""

    def __init__(self, message: str, offset: int, length: int = 1, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.length = max(1, length)
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "int" "decimal" "string" "ident" "op" "eof"
    text: str
    pos: int
    value: object = None


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<decimal>\d+\.\d+)
  | (?P<int>\d+)
  | (?P<string>[rR]?(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|\||&&|==|!=|<=|>=|[<>!+\-*/%.,()\[\]?:])
    """,
    re.VERBOSE,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}
_KEYWORDS = {"true", "false", "in", "null"}
_SUGGESTIONS = {
    "=": ("`=` is not an operator", "use `==` to compare"),
    "&": ("`&` is not an operator", "use `&&` for logical and"),
    "|": ("`|` is not an operator", "use `||` for logical or"),
}
_WORD_OPERATORS = {"and": "&&", "or": "||", "not": "!"}


def _unescape(body: str, start: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6]):
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        elif nxt == "U" and re.fullmatch(r"[0-9a-fA-F]{8}", body[i + 2 : i + 10]):
            code = int(body[i + 2 : i + 10], 16)
            if code > 0x10FFFF:
                raise ConditionSyntaxError("escape is beyond Unicode", start + i, 10)
            out.append(chr(code))
            i += 10
        else:
            raise ConditionSyntaxError(
                f"unknown escape `\\{nxt}` in string",
                start + i,
                2,
                hint='write `\\\\` for a backslash, or use a raw string r"..." for regexes',
            )
    return "".join(out)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch in _SUGGESTIONS:
                msg, hint = _SUGGESTIONS[ch]
                raise ConditionSyntaxError(msg, pos, 1, hint)
            if ch in "\"'":
                raise ConditionSyntaxError("unterminated string", pos, len(text) - pos)
            raise ConditionSyntaxError(f"unexpected character {ch!r}", pos)
        kind = m.lastgroup or ""
        tok = m.group()
        if kind == "string":
            raw = tok[0] in "rR"
            body = tok[2:-1] if raw else tok[1:-1]
            value = body if raw else _unescape(body, pos + 1)
            tokens.append(Token("string", tok, pos, value))
        elif kind in ("int", "decimal"):
            digits = len(tok) - (kind == "decimal")
            if digits > MAX_NUMBER_DIGITS:
                raise ConditionSyntaxError(
                    f"number literal has {digits} digits; at most {MAX_NUMBER_DIGITS} are allowed",
                    pos,
                    len(tok),
                )
            number = int(tok) if kind == "int" else Decimal(tok)
            tokens.append(Token(kind, tok, pos, number))
        elif kind == "ident":
            tokens.append(Token("ident", tok, pos))
        elif kind == "op":
            tokens.append(Token("op", tok, pos))
        pos = m.end()
    # End of input points just past the last visible character, not at trailing newlines.
    tokens.append(Token("eof", "", len(text.rstrip())))
    return tokens


_RELATIONS = {"==", "!=", "<", "<=", ">", ">=", "in"}
# Binary operators by precedence level, loosest first (see the grammar above).
_LEVEL_OF = {
    "||": 0, "&&": 1,
    "==": 2, "!=": 2, "<": 2, "<=": 2, ">": 2, ">=": 2, "in": 2,
    "+": 3, "-": 3,
    "*": 4, "/": 4, "%": 4,
}  # fmt: skip
_COMPREHENSIONS = {"exists", "all"}


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    # -- token helpers -------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def at(self, text: str) -> bool:
        t = self.tok
        return t.kind in ("op", "ident") and t.text == text

    def advance(self) -> Token:
        t = self.tok
        self.i += 1
        return t

    def expect(self, text: str, context: str) -> Token:
        if not self.at(text):
            self.fail(f"expected `{text}` {context}")
        return self.advance()

    def fail(self, message: str, hint: str | None = None) -> None:
        t = self.tok
        if t.kind == "eof":
            raise ConditionSyntaxError(message + ", found end of condition", t.pos, 1, hint)
        if t.kind == "ident" and t.text in _WORD_OPERATORS:
            op = _WORD_OPERATORS[t.text]
            hint = hint or f"use `{op}` instead of `{t.text}`"
        raise ConditionSyntaxError(f"{message}, found `{t.text}`", t.pos, len(t.text), hint)

    def nest(self) -> None:
        # Recursion in this parser follows parentheses, `?:` and unary operators; binary
        # chains are loops here and are measured on the finished tree by _check_shape.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionSyntaxError(
                f"condition nests deeper than {MAX_DEPTH} levels",
                self.tok.pos,
                hint="split it into several rules, or use `x in [...]` for long alternatives",
            )

    # -- grammar -------------------------------------------------------------------
    def parse(self) -> Expr:
        if self.tok.kind == "eof":
            raise ConditionSyntaxError("empty condition", 0, 1, "write `true` to always match")
        expr = self.expr()
        if self.tok.kind != "eof":
            self.fail("expected an operator or the end of the condition")
        return expr

    def expr(self) -> Expr:
        self.nest()
        start = self.tok.pos
        cond = self.binary(0)
        if self.at("?"):
            self.advance()
            then = self.expr()
            self.expect(":", "in `cond ? a : b`")
            otherwise = self.expr()
            cond = Conditional(cond, then, otherwise, start, self.prev_end())
        self.depth -= 1
        return cond

    def binary(self, min_level: int) -> Expr:
        """Precedence climbing: a chain of one operator is a loop, and only a right
        operand of a tighter operator recurses — so each parenthesis costs a handful of
        stack frames, not one per precedence level."""
        start = self.tok.pos
        left = self.unary()
        while self.tok.kind in ("op", "ident"):
            level = _LEVEL_OF.get(self.tok.text)
            if level is None or level < min_level:
                break
            op = self.advance().text
            self.nest()
            right = self.binary(level + 1)
            self.depth -= 1
            left = Binary(op, left, right, start, self.prev_end())
        return left

    def unary(self) -> Expr:
        if self.at("!") or self.at("-"):
            start = self.tok.pos
            op = self.advance().text
            self.nest()
            operand = self.unary()
            self.depth -= 1
            if (
                op == "-"
                and isinstance(operand, Literal)
                and isinstance(operand.value, int | Decimal)
                and not isinstance(operand.value, bool)
            ):
                return Literal(-operand.value, start, self.prev_end())
            return Unary(op, operand, start, self.prev_end())
        return self.member()

    def member(self) -> Expr:
        start = self.tok.pos
        node = self.primary()
        while self.at("."):
            self.advance()
            if self.tok.kind != "ident" or self.tok.text in _KEYWORDS:
                self.fail("expected a field or method name after `.`")
            name = self.advance().text
            if self.at("("):
                node = self.method(node, name, start)
            else:
                node = Select(node, name, start, self.prev_end())
        if self.at("["):
            self.fail(
                "indexing with `[...]` is not supported",
                "select fields with `.name`; test list membership with `in`",
            )
        return node

    def method(self, target: Expr, name: str, start: int) -> Expr:
        open_paren = self.advance()
        if name in _COMPREHENSIONS:
            if self.tok.kind != "ident" or self.tok.text in _KEYWORDS:
                self.fail(f"expected a variable name as the first argument of `{name}`")
            var = self.advance().text
            self.expect(",", f"after the variable of `{name}(var, predicate)`")
            body = self.expr()
            self.expect(")", f"to close `{name}(`")
            return Comprehension(name, target, var, body, start, self.prev_end())
        args = self.arguments(")", open_paren)
        return Call(target, name, args, start, self.prev_end())

    def arguments(self, closer: str, opener: Token) -> tuple[Expr, ...]:
        args: list[Expr] = []
        if not self.at(closer):
            args.append(self.expr())
            while self.at(","):
                self.advance()
                if self.at(closer):  # trailing comma, as CEL allows in lists
                    break
                args.append(self.expr())
        if not self.at(closer):
            self.fail(f"expected `,` or `{closer}` to close `{opener.text}` at offset {opener.pos}")
        self.advance()
        return tuple(args)

    def primary(self) -> Expr:
        t = self.tok
        if t.kind in ("int", "decimal", "string"):
            self.advance()
            assert isinstance(t.value, int | Decimal | str)
            return Literal(t.value, t.pos, t.pos + len(t.text))
        if t.kind == "ident":
            if t.text in ("true", "false"):
                self.advance()
                return Literal(t.text == "true", t.pos, t.pos + len(t.text))
            if t.text == "null":
                raise ConditionSyntaxError(
                    "`null` is not part of the language", t.pos, 4, "test presence with `has(...)`"
                )
            if t.text in _KEYWORDS or t.text in _WORD_OPERATORS:
                self.fail("expected a value")
            self.advance()
            if self.at("("):
                opener = self.advance()
                args = self.arguments(")", opener)
                return Call(None, t.text, args, t.pos, self.prev_end())
            return Ident(t.text, t.pos, t.pos + len(t.text))
        if t.kind == "op" and t.text == "(":
            self.advance()
            inner = self.expr()
            self.expect(")", "to close `(`")
            return inner
        if t.kind == "op" and t.text == "[":
            opener = self.advance()
            items = self.arguments("]", opener)
            return ListLit(items, t.pos, self.prev_end())
        self.fail("expected a value")
        raise AssertionError("unreachable")

    def prev_end(self) -> int:
        t = self.tokens[self.i - 1]
        return t.pos + len(t.text)


def _check_shape(root: Expr) -> None:
    """Refuse trees taller than MAX_DEPTH or larger than MAX_NODES, without recursion (the
    tree may be a 4,000-term chain). The error points at the operand that crossed the
    limit: for a chain, just after the operator that made it too long."""
    heights: dict[int, int] = {}
    count = 0
    stack: list[tuple[Expr, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if not done:
            count += 1
            if count > MAX_NODES:
                raise ConditionSyntaxError(
                    f"condition has more than {MAX_NODES} terms",
                    node.pos,
                    max(1, node.end - node.pos),
                    "split it into several rules",
                )
            stack.append((node, True))
            stack.extend((child, False) for child in children(node))
            continue
        height = 1 + max((heights.pop(id(c)) for c in children(node)), default=0)
        if height > MAX_DEPTH:
            culprit = node.right if isinstance(node, Binary) else node
            raise ConditionSyntaxError(
                f"condition nests deeper than {MAX_DEPTH} levels "
                f"(each operator of a chain such as `a && b && c` is one level)",
                culprit.pos,
                max(1, culprit.end - culprit.pos),
                "split it into several rules, or use `x in [...]` for long alternatives",
            )
        heights[id(node)] = height


def parse_condition(text: str) -> Expr:
    """Parse condition text; raises :class:`ConditionSyntaxError` with an offset on failure."""
    if len(text) > MAX_CONDITION_LENGTH:
        raise ConditionSyntaxError(
            f"condition is {len(text)} characters long; at most {MAX_CONDITION_LENGTH} are allowed",
            MAX_CONDITION_LENGTH,
            hint="split it into several rules",
        )
    expr = _Parser(text).parse()
    _check_shape(expr)
    return expr
