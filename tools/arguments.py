"""The options several command lines share, declared once so that every tool spells and checks
them the same way: its description, the converted folder and resolution, a list of sizes and the
augmentations to look at. Argument errors end through `parser.error` (usage, exit code 2)."""

from __future__ import annotations

import argparse


def parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first line of the tool's docstring, with --verbose (read before any
    import by tools/__init__.py, see common/quiet.py; argparse only accepts it)."""
    made = argparse.ArgumentParser(description=doc.split("\n")[0])
    made.add_argument("--verbose", action="store_true",
                      help="show TensorFlow's and JAX's start-up notices (hidden by default; also TIN_VERBOSE=1)")
    return made


def data_parser(doc: str, default_resolution: int = 64) -> argparse.ArgumentParser:
    """The parser of a tool that reads one resolution of a converted folder: --data, --resolution."""
    made = parser(doc)
    data_folder(made)
    resolution(made, default_resolution)
    return made


def data_folder(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="the converter's output folder")


def resolution(parser: argparse.ArgumentParser, default: int = 64) -> None:
    parser.add_argument("--resolution", type=int, default=default)


def sizes(parser: argparse.ArgumentParser, option: str, text: str) -> list[int]:
    """'32,48,64' -> [32, 48, 64], in the order given."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        parser.error(f"{option} {text!r}: expected numbers like 32,48,64")


def augmentation_names(parser: argparse.ArgumentParser, text: str | None) -> list[str]:
    """'flip,rotate' -> the names, checked; None -> every registered augmentation."""
    from pipeline import augment

    names = [n.strip() for n in text.split(",")] if text else list(augment.REGISTRY)
    unknown = [n for n in names if n not in augment.REGISTRY]
    if unknown:
        parser.error(f"--augment: unknown {', '.join(unknown)} (known: {', '.join(augment.REGISTRY)})")
    return names
