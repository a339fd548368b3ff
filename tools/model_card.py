"""Print what the course asks to know about a model before training it.

    python -m tools.model_card --model resnet18 --resolution 32,48,64
    python -m tools.model_card --model examples/student_net.py:build
    python -m tools.model_card --config configs/own_resnet.toml

Parameters, the rule report, multiply-adds per image at each resolution, and the receptive field
of the last convolution against the image size (a receptive field much smaller than the image
means the network never sees whole objects; the course insists on checking it). The work:
model/card.py.
"""

from __future__ import annotations

import sys

from common.cli import command_line
from tools import arguments


@command_line
def main(argv: list[str] | None = None) -> int:
    import model
    from model import card, custom

    parser = arguments.parser(__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help=f"a preset ({', '.join(model.PRESETS)}) or path/to/file.py:function")
    which.add_argument("--config", help="the model of a config (a preset, a table or a file)")
    parser.add_argument("--resolution", default="32,48,64", help="comma-separated sizes in px")
    parser.add_argument("--classes", type=int, default=200)
    args = parser.parse_args(argv)
    if args.config:
        from training import config as configs

        chosen = configs.read(args.config).model
    else:
        chosen = args.model
        if custom.kind_of(chosen) == "preset" and chosen not in model.PRESETS:
            parser.error(f"--model {chosen}: unknown preset (choose from {', '.join(model.PRESETS)})")
    resolutions = arguments.sizes(parser, "--resolution", args.resolution)
    print(card.card(chosen, resolutions, args.classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
