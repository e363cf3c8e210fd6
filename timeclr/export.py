"""Export a pretrained encoder for use elsewhere: ``python -m timeclr.export checkpoint=PATH -o encoder.pt``.

Writes the backbone's plain state dict (tensors only; ``torch.load(..., weights_only=True)`` reads
it) and ``encoder.json`` beside it: the architecture, the torchvision model it loads into strictly
(R3D-18 / R(2+1)D-18 with batch norm; set that model's ``fc`` to ``nn.Identity()`` first) and the
preprocessing its clips need. ``timeclr/encoder.py`` has the details and ``load_encoder``.
"""
import argparse

from timeclr.errors import ConfigError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m timeclr.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", metavar="checkpoint=PATH", help="a checkpoint.pt of python -m timeclr.train")
    parser.add_argument("-o", "--out", required=True, help="the weights file to write (its .json is written beside it)")
    args = parser.parse_args(argv)
    path = args.checkpoint.split("=", 1)[1] if args.checkpoint.startswith("checkpoint=") else args.checkpoint
    from timeclr.encoder import export_encoder  # torch: after the arguments parse

    try:
        weights, meta = export_encoder(path, args.out)
    except (ConfigError, OSError) as e:
        raise SystemExit(f"timeclr.export: {e}") from None
    print(f"wrote {weights} and {meta}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
