"""LR range test (Smith, 2017): find base_lr and max_lr for the cyclical schedule.

    python -m tools.lr_find --data records --model resnet18 --resolution 32

Trains fresh weights while the learning rate grows exponentially from --start-lr to --end-lr
over --steps steps, stops early when the loss explodes, writes `lr_find.csv` and `lr_find.png`
(loss against learning rate) to --out, and prints Smith's suggestion: base_lr where the loss
starts to fall, max_lr where it stops falling. Runs under TensorFlow and JAX. The work:
training/lr_find.py.
"""

from __future__ import annotations

import sys

from common.cli import command_line
from tools import arguments
from training import lr_find


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = arguments.parser(__doc__)
    arguments.data_folder(parser)
    parser.add_argument("--model", required=True, help="a model preset")
    arguments.resolution(parser, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--start-lr", type=float, default=1e-5)
    parser.add_argument("--end-lr", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--classes", type=int, help="train on the first N classes only")
    parser.add_argument("--augment", default="none", help="augmentation policy during the sweep (default none)")
    parser.add_argument("--out", default="lr_find", help="folder for lr_find.csv and lr_find.png")
    args = parser.parse_args(argv)
    import model

    if args.model not in model.PRESETS:
        parser.error(f"--model {args.model}: unknown preset (choose from {', '.join(model.PRESETS)})")
    if not 0 < args.start_lr < args.end_lr:
        parser.error("--start-lr must be positive and below --end-lr")
    if args.steps < 20:
        parser.error("--steps: at least 20 steps are needed to see a trend")
    sweep = lr_find.Sweep(batch_size=args.batch_size, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps,
                          classes=args.classes, policy=args.augment)
    lr_find.run(args.data, args.model, args.resolution, sweep, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
