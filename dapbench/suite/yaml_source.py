"""Reading a suite file: its text (a readable UTF-8 file of bounded size), a strict YAML parse (keys given twice,
keys that are not names, recursive or exploding aliases), the line of every YAML path, and `load_suite`, which
validates the data into a `Suite` and reports every problem at its line."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dapbench.errors import SuiteError
from dapbench.suite.checks import check_grid
from dapbench.suite.problems import SUITE_DOCS, clean_loc, fmt_path, pydantic_problems, report_problems
from dapbench.suite.schema import Suite

MAX_SUITE_BYTES = 1 << 20  # a suite is a page of YAML; anything larger is not one
MAX_VALUES = 100_000  # values in a suite once its aliases are expanded (a "billion laughs" file stops here)

_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


def _line_at(data: bytes, offset: int) -> int:
    return data[:offset].count(b"\n") + 1


def read_text(path: Path) -> str:
    """The suite file's text, or one `SuiteError` line saying why it is not a readable UTF-8 text file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SuiteError(f"{path}: no such suite file") from None
    except OSError as e:
        raise SuiteError(f"{path}: cannot read the suite file ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise SuiteError(f"{path}: is a folder; give the suite's YAML file (e.g. suites/quick.yaml)")
    if not stat.S_ISREG(st.st_mode):
        raise SuiteError(f"{path}: not a regular file; a suite is a YAML file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SUITE_BYTES + 1)
    except OSError as e:
        raise SuiteError(f"{path}: cannot read the suite file ({e.strerror or e})") from None
    if len(data) > MAX_SUITE_BYTES:
        raise SuiteError(f"{path}: larger than {MAX_SUITE_BYTES // 1024} KiB; a suite is a page of YAML")
    for bom, enc in _BOMS.items():
        if data.startswith(bom):
            raise SuiteError(f"{path}: {enc} text; save the suite as UTF-8")
    if b"\0" in data:
        at = data.index(b"\0")
        raise SuiteError(f"{path}:{_line_at(data, at)}: a binary file (a NUL byte at offset {at}), not a "
                         "YAML suite")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SuiteError(f"{path}:{_line_at(data, e.start)}: not UTF-8 text (byte 0x{data[e.start]:02x} at "
                         f"offset {e.start}); save the suite as UTF-8") from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise SuiteError(f"{path}: the file is empty; a suite is a YAML mapping ({SUITE_DOCS})")
    return text


def _yaml_error(path: Path, text: str, e: yaml.YAMLError) -> str:
    """A YAML error as one line: `file:line:column: what`."""
    if isinstance(e, yaml.reader.ReaderError):
        line = text[: e.position].count("\n") + 1
        char = e.character if isinstance(e.character, int) else ord(e.character)
        return f"{path}:{line}: the control character #x{char:04x}, which YAML does not allow in a file"
    mark = getattr(e, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    what = " ".join(str(getattr(e, "problem", None) or e).split())
    context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
    if context and cmark is not None:
        what += f" ({' '.join(context.split())} at line {cmark.line + 1})"
    return f"{where}: YAML syntax error: {what}"


_MERGE = "tag:yaml.org,2002:merge"
_STR = "tag:yaml.org,2002:str"


def parse(path: Path, text: str) -> tuple[Any, dict[tuple, int], list[str]]:
    """(data, YAML path -> line, problems) of a strict reading: a key given twice in one mapping, or a key that
    YAML reads as something other than a name, is a problem; a recursive alias, or aliases expanding past
    MAX_VALUES values, is refused at once."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as e:
        raise SuiteError(_yaml_error(path, text, e)) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise SuiteError(f"{path}: the file holds no YAML document; a suite is a YAML mapping ({SUITE_DOCS})")
        lines, problems = _index(path, node)
        try:
            data = loader.construct_document(node)
        except yaml.YAMLError:
            if problems:  # e.g. a list used as a key: the problem already says it
                raise SuiteError(report_problems(path, problems)) from None
            raise
        return data, lines, problems
    except yaml.YAMLError as e:
        raise SuiteError(_yaml_error(path, text, e)) from None
    except RecursionError:
        raise SuiteError(f"{path}: nested too deeply to be a suite") from None
    finally:
        loader.dispose()


def _index(path: Path, root: yaml.Node) -> tuple[dict[tuple, int], list[str]]:
    """Map each YAML path (tuple of keys / indices) to its 1-based line; check keys and aliases."""
    lines: dict[tuple, int] = {}
    problems: list[str] = []
    walked: set[int] = set()
    open_: set[int] = set()

    def walk(node: yaml.Node, loc: tuple) -> None:
        if id(node) in open_:
            raise SuiteError(f"{path}:{node.start_mark.line + 1}: {fmt_path(loc)}: a recursive alias (an anchor "
                             "used inside itself); a suite is a tree")
        lines.setdefault(loc, node.start_mark.line + 1)
        if id(node) in walked:  # an alias of a node already walked
            return
        walked.add(id(node))
        open_.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for k, v in node.value:
                if k.tag == _MERGE:
                    walk(v, (*loc, "<<"))
                    continue
                line = k.start_mark.line + 1
                if not isinstance(k, yaml.ScalarNode):
                    problems.append(f"{path}:{line}: {fmt_path(loc)}: a key is a name, not a list or mapping")
                    walk(v, loc)
                    continue
                key = k.value
                if k.tag != _STR:
                    kind = k.tag.rsplit(":", 1)[-1]
                    problems.append(f"{path}:{line}: {fmt_path((*loc, key))}: YAML reads the key {key!r} as "
                                    f"{'a' if kind != 'int' else 'an'} {kind}, not a name; quote it: '{key}'")
                elif key in first:
                    problems.append(f"{path}:{line}: {fmt_path((*loc, key))}: key {key!r} given twice (lines "
                                    f"{first[key]} and {line}); YAML would keep only the last value: remove one")
                first.setdefault(key, line)
                walk(v, (*loc, key))
                lines[(*loc, key)] = line  # a key's own line, not its value's
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, (*loc, i))
        open_.discard(id(node))

    walk(root, ())
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:  # values once aliases are expanded (memoised: the graph has no cycle)
        if id(node) not in sizes:
            kids = ([x for kv in node.value for x in kv] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
            sizes[id(node)] = 1 + sum(size(c) for c in kids)
        return sizes[id(node)]

    n = size(root)
    if n > MAX_VALUES:
        raise SuiteError(f"{path}: its aliases expand it to {n:,} values; a suite holds at most {MAX_VALUES:,}")
    return lines, problems


# ----- loading -----------------------------------------------------------------------------------------------
def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; one `SuiteError` listing every problem otherwise (a file that is not a
    readable UTF-8 YAML mapping: one line)."""
    path = Path(path)
    text = read_text(path)
    data, lines, problems = parse(path, text)
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"the value {data!r}"[:80]
        raise SuiteError(f"{path}:1: a suite is a YAML mapping with keys {', '.join(Suite.model_fields)} (the file "
                         f"holds {kind})")
    note = {}
    if "name" not in data:
        data = {**data, "name": path.stem}
        note[("name",)] = " (the name comes from the file name, as the suite sets no `name:`; set one)"
    suite, origin, dropped, found = _validate(path, lines, data, note)
    problems += found
    if suite is not None:
        problems += check_grid(suite, path, lines, origin, dropped, data)
    if problems:
        raise SuiteError(report_problems(path, problems))
    return suite


_LISTS = ("algorithms", "overrides", "datasets")
_PLACEHOLDER = {"name": "suite", "tasks": [], "algorithms": [], "seeds": [0]}


def _validate(path: Path, lines: dict[tuple, int], data: dict, note: dict
              ) -> tuple[Suite | None, dict[str, list[int]], set[str], list[str]]:
    """(suite, origin, dropped, problems). When pydantic refuses parts of the suite, those parts are left out
    (a list entry, or a top-level key, replaced by its default) and the rest is validated again, so the grid
    checks still see everything else: `origin[k][i]` is the index in the file of entry i of list k, `dropped`
    the top-level keys left out."""
    try:
        return Suite.model_validate(data), {}, set(), []
    except ValidationError as e:
        errors = e.errors()
    problems = [p for _, p in pydantic_problems(path, lines, errors, Suite, note=note)]
    drop_top: set[str] = set()
    drop_items: dict[str, set[int]] = {}
    for err in errors:
        loc = clean_loc(err["loc"])
        if err["type"] == "invalid_key" and len(loc) == 1:
            continue  # a top-level key that is not a string: left out below
        if not loc:
            return None, {}, set(), problems
        if loc[0] in _LISTS and len(loc) > 1 and isinstance(loc[1], int):
            drop_items.setdefault(str(loc[0]), set()).add(loc[1])
        else:
            drop_top.add(str(loc[0]))
    pruned = {k: v for k, v in data.items() if isinstance(k, str) and k not in drop_top}
    for k in drop_top & set(_PLACEHOLDER):
        pruned[k] = _PLACEHOLDER[k]
    origin: dict[str, list[int]] = {}
    for k, idx in drop_items.items():
        keep = [i for i in range(len(data[k])) if i not in idx]
        pruned[k] = [data[k][i] for i in keep]
        origin[k] = keep
    try:
        suite = Suite.model_validate(pruned)
    except ValidationError:
        return None, {}, set(), problems
    return suite, origin, drop_top | {f"{k}[]" for k in drop_items}, problems
