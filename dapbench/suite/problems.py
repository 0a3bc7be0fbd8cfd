"""Problems in a suite file, worded: each at its YAML line (`file:line: field: message`), unknown names with the
closest valid one, pydantic's errors mapped onto the file's keys, and the one `SuiteError` text listing them."""

from __future__ import annotations

import difflib
import unicodedata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

SUITE_DOCS = "docs/suites.md"


def short(v: Any) -> str:
    """repr(v), cut to 80 characters (a hostile value must not flood the message)."""
    r = repr(v)
    return r if len(r) <= 80 else r[:76] + "...)"


def fmt_path(loc: tuple) -> str:
    """`a.b[0].c`; a key holding a line break or another control character is shown as its repr in brackets,
    so a problem stays one line."""
    out = ""
    for part in loc:
        if isinstance(part, str) and any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in part):
            out += f"[{short(part)}]"
        else:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def line_of(lines: dict[tuple, int], loc: tuple) -> int | None:
    for n in range(len(loc), -1, -1):
        if tuple(loc[:n]) in lines:
            return lines[tuple(loc[:n])]
    return None


def problem_at(path: Path, lines: dict[tuple, int], loc: tuple, msg: str) -> str:
    line = line_of(lines, loc)
    where = f"{path}:{line}" if line else str(path)
    return f"{where}: {fmt_path(loc)}: {msg}"


def closest(word: str, options: list[str]) -> str | None:
    """The option a typo most likely meant: difflib's closest match, else the option `word` abbreviates
    (`lr` -> `learning_rate`)."""
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if match:
        return match[0]
    initials = [o for o in options if "_" in o and "".join(p[:1] for p in o.split("_")) == word]
    return initials[0] if len(initials) == 1 else None


def unknown_name(what: str, value: str, allowed: list[str], more: str = "") -> str:
    guess = closest(value, allowed) if isinstance(value, str) else None
    return (f"unknown {what} {value!r}; " + (f"did you mean {guess!r}? " if guess else "")
            + f"allowed: {', '.join(allowed)}{more}")


_BRANCHES = ("list", "int", "str", "float", "bool", "literal")


def clean_loc(loc: tuple) -> tuple:
    """A pydantic error location without its union-branch markers (`list[str]`, `literal[...]`, ...)."""
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in _BRANCHES)))


def _keys_of(model: Any, parent: tuple) -> list[str] | None:
    """The keys a mapping at `parent` (under `model`) allows, or None when it is not a model's mapping."""
    for n in (p for p in parent if isinstance(p, str)):
        field = model.model_fields.get(n)
        if field is None:
            return None
        args = getattr(field.annotation, "__args__", None) or (field.annotation,)
        cand = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if not cand:
            inner = [x for a in args for x in getattr(a, "__args__", ())]  # list[Model]
            cand = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
        if not cand:
            return None
        model = cand[0]
    return list(model.model_fields)


def pydantic_problems(path: Path, lines: dict[tuple, int], errors: list[dict], model: Any, prefix: tuple = (),
                      note: dict[tuple, str] | None = None) -> list[tuple[tuple, str]]:
    """(location, one-line problem) per pydantic error, `prefix` + its location, unknown keys with the closest
    valid name; `note` adds a remark to the problems at a location."""
    out: list[tuple[tuple, str]] = []
    branches: dict[tuple, list[str]] = {}  # location -> the union's branches that all refused the value
    for e in errors:
        loc, marks = clean_loc(e["loc"]), [p for p in e["loc"] if p not in clean_loc(e["loc"])]
        if marks:
            branches.setdefault(loc, []).append(str(marks[0]))
    said: set[tuple] = set()
    for e in errors:
        if e["type"] == "invalid_key":  # a key YAML did not read as a name: yaml_source says which
            continue
        loc = clean_loc(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")  # our validators' messages already say what was given
        if len(set(branches.get(loc, ()))) > 1:  # one value that no branch of a union took: one problem
            if loc in said:
                continue
            said.add(loc)
            msg = f"expected {' or '.join(dict.fromkeys(branches[loc]))} (got {short(e.get('input'))})"
        if e["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
            allowed = _keys_of(model, loc[:-1]) or []
            guess = closest(loc[-1], allowed)
            msg = (f"unknown key; did you mean {guess!r}?" if guess else
                   "unknown key" + (f"; allowed keys: {', '.join(allowed)}" if allowed else ""))
        elif e["type"] != "value_error" and not isinstance(e.get("input"), dict | list):
            msg = f"{msg} (got {short(e.get('input'))})"
        if note and loc in note:
            msg += note[loc]
        out.append((loc, problem_at(path, lines, prefix + loc, msg)))
    return out


def one_line_errors(e: ValidationError) -> str:
    """A pydantic error in one line: `field: message` per problem."""
    return "; ".join(f"{'.'.join(map(str, x['loc'])) or 'the value'}: {x['msg'].removeprefix('Value error, ')}"
                     for x in e.errors())


def report_problems(path: Path, problems: list[str]) -> str:
    problems = list(dict.fromkeys(problems))
    if len(problems) == 1:
        return f"{problems[0]} (invalid suite; see {SUITE_DOCS})"
    head = f"invalid suite {path} ({len(problems)} problems; see {SUITE_DOCS}):"
    return "\n  ".join([head, *problems])
