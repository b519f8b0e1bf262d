"""Erlang terms as `io_lib:format("~p", [Term])` prints them: the text of a crashed replication's reason.

couch_replicator_utils:rep_error_to_binary/1 turns a crash reason into text with couch_util:to_binary/1,
which is `~p`: the pretty printer (io_lib_pretty, line length 80) breaks a term that does not fit on one
line, so a real reason reads `{replication_auth_error,\\n    {session_request_unauthorized,...}}`.

This is io_lib_pretty's layout for the terms the replicator reports: atoms, integers, strings (lists of
bytes, printed as latin-1 strings when printable, else as lists of integers) and tuples; a tuple whose
first element is an atom is "tagged" and indents the rest after its tag. Depth and character limits
are off, as for `~p`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

LINE_LENGTH = 80


@dataclass(frozen=True)
class Atom:
    name: str


Term = Union[Atom, int, str, tuple]
ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v", "\b": "\\b",
           "\f": "\\f", "\x1b": "\\e"}
UNQUOTED_ATOM = re.compile(r"[a-z][a-zA-Z0-9_@]*")


@dataclass
class Node:
    """io_lib_pretty's intermediate format: flat text (a leaf), or a tuple/list of nodes."""
    text: str | None
    children: list[Node]
    length: int
    tagged: bool = False
    brackets: str = "{}"

    @property
    def leaf(self) -> bool:  # io_lib_pretty ?ATM
        return self.text is not None


def _printable(chars: str) -> bool:
    """io_lib:printable_latin1_list/1."""
    return all(" " <= c <= "~" or "\xa0" <= c <= "\xff" or c in ESCAPES for c in chars) and chars != ""


def _node(term: Term) -> Node:
    if isinstance(term, Atom):
        text = term.name if UNQUOTED_ATOM.fullmatch(term.name) else "'" + term.name.replace("'", "\\'") + "'"
        return Node(text, [], len(text))
    if isinstance(term, bool):
        raise TypeError("an Erlang boolean is an Atom")
    if isinstance(term, int):
        return Node(str(term), [], len(str(term)))
    if isinstance(term, str):
        # An Erlang string here is a list of bytes (binary_to_list of UTF-8); one latin-1 char per byte.
        chars = term.encode("utf-8").decode("latin-1")
        if _printable(chars):
            text = '"' + "".join(ESCAPES.get(c, c) for c in chars) + '"'
            return Node(text, [], len(text))
        if chars == "":
            return Node("[]", [], 2)
        return _sequence([Node(str(ord(c)), [], len(str(ord(c)))) for c in chars], "[]", False)
    if isinstance(term, tuple):
        if not term:
            return Node("{}", [], 2)
        tagged = isinstance(term[0], Atom) and len(term) > 1
        return _sequence([_node(t) for t in term], "{}", tagged)
    raise TypeError(f"not an Erlang term couchsim prints: {term!r}")


def _sequence(children: list[Node], brackets: str, tagged: bool) -> Node:
    return Node(None, children, 2 + sum(c.length for c in children) + len(children) - 1, tagged, brackets)


def _write(node: Node) -> str:
    if node.leaf:
        return node.text
    return node.brackets[0] + ",".join(_write(c) for c in node.children) + node.brackets[1]


def _last_depth(rest: list[Node], depth: int) -> int:
    return 0 if rest else depth + 1


def _fits_tail(node: Node, col: int, depth: int, width: int, most: int) -> bool:
    """pp_tail/cind_tail: the next element goes on the same line."""
    length = 1 + node.length
    if depth == 0:
        return length + 1 < LINE_LENGTH - col and width + length + 1 <= most and node.leaf
    return length < LINE_LENGTH - col - depth and width + length + depth <= most and node.leaf


class NoGood(Exception):
    """cind/7: this tag indentation pushes text past half the line."""


class Printer:
    def __init__(self, most: int):
        self.most = most  # M: the whole term's length, as `~p` has no character limit

    def fits(self, node: Node, col: int, depth: int, width: int) -> bool:
        return node.length < LINE_LENGTH - col - depth and node.length + width + depth <= self.most

    # -- cind: the indentation of tagged tuples (TInd)
    def cind(self, node: Node, col: int, ind: int, depth: int, width: int) -> int:
        if self.fits(node, col, depth, width) or node.leaf:
            return ind
        if node.tagged:
            return self.cind_tag_tuple(node.children, col, ind, depth, width + 1)
        return self.cind_list(node.children, col + 1, ind, depth, width + 1)

    def cind_tag_tuple(self, nodes: list[Node], col: int, ind: int, depth: int, width: int) -> int:
        tag, rest = nodes[0], nodes[1:]
        tag_col = col + tag.length + 2
        if ind > 0 and tag.length + 2 > ind:
            col1 = col + ind
            if self.most + col1 <= LINE_LENGTH or col1 <= LINE_LENGTH // 2:
                return self.cind_tail(rest, col1, tag_col, ind, depth, width + tag.length)
            raise NoGood
        if self.most + tag_col < LINE_LENGTH or tag_col < LINE_LENGTH // 2:
            return self.cind_list(rest, tag_col, ind, depth, width + tag.length + 1)
        raise NoGood

    def cind_list(self, nodes: list[Node], col0: int, ind: int, depth: int, width: int) -> int:
        used = self.cind_element(nodes[0], col0, ind, _last_depth(nodes[1:], depth), width)
        return self.cind_tail(nodes[1:], col0, col0 + used, ind, depth, width + used)

    def cind_tail(self, nodes: list[Node], col0: int, col: int, ind: int, depth: int, width: int) -> int:
        for index, node in enumerate(nodes):
            last = _last_depth(nodes[index + 1:], depth)
            if _fits_tail(node, col, last, width, self.most):
                col, width = col + 1 + node.length, width + 1 + node.length
            else:
                used = self.cind_element(node, col0, ind, last, 0)
                col, width = col0 + used, used
        return ind

    def cind_element(self, node: Node, col: int, ind: int, depth: int, width: int) -> int:
        if self.fits(node, col, depth, width) and node.leaf:
            return node.length
        self.cind(node, col, ind, depth, width)
        return LINE_LENGTH

    # -- pp: the layout
    def pp(self, node: Node, col: int, tind: int, indent: str, depth: int, width: int) -> str:
        if self.fits(node, col, depth, width) or node.leaf:
            return _write(node)
        open_, close = node.brackets
        if node.tagged:
            return open_ + self.pp_tag_tuple(node.children, col, tind, indent, depth, width + 1) + close
        return open_ + self.pp_list(node.children, col + 1, tind, " " + indent, depth, width + 1) + close

    def pp_tag_tuple(self, nodes: list[Node], col: int, tind: int, indent: str, depth: int, width: int) -> str:
        tag, rest = nodes[0], nodes[1:]
        tag_ind = tag.length + 2
        if tind > 0 and tag_ind > tind:
            return tag.text + self.pp_tail(rest, col + tind, col + tag_ind, tind, " " * tind + indent, depth,
                                           width + tag.length)
        return tag.text + "," + self.pp_list(rest, col + tag_ind, tind, " " * tag_ind + indent, depth,
                                             width + tag.length + 1)

    def pp_list(self, nodes: list[Node], col0: int, tind: int, indent: str, depth: int, width: int) -> str:
        text, used = self.pp_element(nodes[0], col0, tind, indent, _last_depth(nodes[1:], depth), width)
        return text + self.pp_tail(nodes[1:], col0, col0 + used, tind, indent, depth, width + used)

    def pp_tail(self, nodes: list[Node], col0: int, col: int, tind: int, indent: str, depth: int,
                width: int) -> str:
        out = []
        for index, node in enumerate(nodes):
            last = _last_depth(nodes[index + 1:], depth)
            if _fits_tail(node, col, last, width, self.most):
                out.append("," + _write(node))
                col, width = col + 1 + node.length, width + 1 + node.length
            else:
                text, used = self.pp_element(node, col0, tind, indent, last, 0)
                out.append(",\n" + indent + text)
                col, width = col0 + used, used
        return "".join(out)

    def pp_element(self, node: Node, col: int, tind: int, indent: str, depth: int, width: int
                   ) -> tuple[str, int]:
        if self.fits(node, col, depth, width) and node.leaf:
            return _write(node), node.length
        return self.pp(node, col, tind, indent, depth, width), LINE_LENGTH


def pretty(term: Term) -> str:
    """`io_lib:format("~p", [Term])` as text (couch_util:to_binary/1 of a crash reason)."""
    node = _node(term)
    col = 1
    if node.leaf or node.length < LINE_LENGTH - col:
        text = _write(node)
    else:
        printer = Printer(node.length)
        tind = 1
        for candidate in (-1, 4):  # while_fail([-1, 4], cind/7, 1)
            try:
                tind = printer.cind(node, col, candidate, 0, 0)
                break
            except NoGood:
                continue
        text = printer.pp(node, col, tind, "", 0, 0)
    return text.encode("latin-1").decode("utf-8", errors="replace")
