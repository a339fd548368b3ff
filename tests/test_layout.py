"""The shape of the code that issue 12 asked for, kept: small functions and modules, thin tools,
a common room that depends on nothing of the project, one write-then-rename helper."""

from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def modules(*rooms: str):
    for room in rooms:
        yield from sorted((ROOT / room).rglob("*.py"))


def test_no_function_in_the_library_takes_more_than_eight_parameters():
    crowded = []
    for path in modules("common", "pipeline", "training", "model"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = node.args
                count = len(arguments.posonlyargs + arguments.args + arguments.kwonlyargs)
                count -= bool(arguments.args and arguments.args[0].arg in ("self", "cls"))
                if count > 8:
                    crowded.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({count})")
    assert not crowded, crowded


def test_modules_stay_small_and_tools_thin():
    too_long = [f"{p.relative_to(ROOT)} ({n})" for p in modules("common", "pipeline", "training", "model")
                if (n := len(p.read_text().splitlines())) > 350]
    too_long += [f"{p.relative_to(ROOT)} ({n})" for p in modules("tools")
                 if (n := len(p.read_text().splitlines())) >= 150]
    assert not too_long, too_long


def test_the_common_room_imports_nothing_of_the_project():
    project = ("pipeline", "model", "training", "tools", "train")
    for path in modules("common"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] not in project, f"{path.name} imports {node.module}"
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] not in project for a in node.names), path.name


def test_one_write_then_rename_helper():
    renames = [f"{p.relative_to(ROOT)}" for p in modules("common", "pipeline", "training", "model", "tools")
               if re.search(r"\.rename\(", p.read_text())]
    assert renames == ["common/files.py"], renames


def test_every_tool_exits_with_what_its_main_returns():
    """The tests run the tools' `main(argv)` in-process (tests/conftest.py `run_tool`): what a user's
    `python -m tools.X` exits with is this last statement, `sys.exit(main())`; without it every
    `error:` line would end with exit code 0."""
    expected = 'if __name__ == "__main__":\n    sys.exit(main())'
    tools, wrong = [], []
    for path in modules("tools"):
        tree = ast.parse(path.read_text())
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            tools.append(path)
            if ast.unparse(tree.body[-1]).replace("'", '"') != expected:
                wrong.append(str(path.relative_to(ROOT)))
    assert not wrong, wrong
    assert len(tools) >= 12  # the tools were found, not none
