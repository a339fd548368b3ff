"""The Colab notebook parses, and every command in it exists with the options it uses."""

from __future__ import annotations

import ast
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _text(node) -> str:
    """A string or f-string literal as text, each {expression} written as {}."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(part) if isinstance(part, ast.Constant) else "{}" for part in node.values)
    return ""


def notebook_commands():
    """The command lines the notebook runs: the first argument of every `run(...)` call."""
    with open(os.path.join(ROOT, "notebooks", "colab.ipynb")) as handle:
        notebook = json.load(handle)
    assert notebook["nbformat"] == 4 and notebook["cells"]
    lines = []
    for cell in notebook["cells"]:
        assert cell["cell_type"] in ("markdown", "code")
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            assert not re.search(r"^\s*[!%]", source, flags=re.M), "shell lines and magics fail silently: use run()"
            tree = ast.parse(source)  # the Python parses
            lines += [_text(node.args[0]) for node in ast.walk(tree) if isinstance(node, ast.Call)
                      and isinstance(node.func, ast.Name) and node.func.id == "run" and node.args]
    return [line for line in lines if line]


def options_of(path):
    """The options a command line's source declares, with the shared ones of tools/arguments.py it uses."""
    with open(path) as handle:
        source = handle.read()
    if "arguments." in source:
        with open(os.path.join(ROOT, "tools", "arguments.py")) as handle:
            source += handle.read()
    return set(re.findall(r'"(--[a-z][a-z0-9-]*)"', source))


def test_every_python_command_exists_with_its_options():
    commands = [c for c in notebook_commands() if c.startswith("python ")]
    assert any("train.py" in c for c in commands) and any("tools.convert" in c for c in commands)
    for command in commands:
        words = command.split()
        if words[1] == "-c":
            continue
        if words[1] == "-m":
            path = os.path.join(ROOT, *words[2].split(".")) + ".py"
            args = words[3:]
        else:
            path = os.path.join(ROOT, words[1])
            args = words[2:]
        assert os.path.exists(path), f"{command}: {path} does not exist"
        known = options_of(path)
        for arg in args:
            if arg.startswith("--"):
                assert arg in known, f"{command}: {os.path.basename(path)} has no option {arg}"


def test_every_install_line_names_a_file_that_exists():
    installs = [c for c in notebook_commands() if c.startswith("pip ")]
    assert installs
    for command in installs:
        for match in re.findall(r"-r (\S+)", command):
            assert os.path.exists(os.path.join(ROOT, match)), command


def test_both_backends_have_a_section():
    commands = notebook_commands()
    assert any("--backend jax" in c for c in commands)
    assert any("train.py" in c and "--backend" not in c for c in commands)


def test_the_convert_cells_skip_only_a_finished_conversion(tmp_path):
    """After a disconnect mid-conversion the manifest exists with "complete": false: the cell must
    run the converter again (it keeps the finished shards), not skip to training."""
    with open(os.path.join(ROOT, "notebooks", "colab.ipynb")) as handle:
        cells = ["".join(c["source"]) for c in json.load(handle)["cells"] if c["cell_type"] == "code"]
    convert_cells = [c for c in cells if "tools.convert" in c]
    assert convert_cells
    for cell in convert_cells:
        helper = cell[:cell.index("if converted(")]
        namespace = {}
        exec(helper, namespace)
        converted = namespace["converted"]
        for resolution in (32, 48, 64):
            (tmp_path / f"{resolution}px").mkdir(exist_ok=True)
            (tmp_path / f"{resolution}px" / "manifest.json").write_text(json.dumps({"complete": True}))
        assert converted(str(tmp_path))
        (tmp_path / "48px" / "manifest.json").write_text(json.dumps({"complete": False}))
        assert not converted(str(tmp_path))
        (tmp_path / "48px" / "manifest.json").unlink()
        assert not converted(str(tmp_path))
