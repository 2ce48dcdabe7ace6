"""Command line: convert pytorch-fid's InceptionV3 weights once, for FID/KID/IS in Inception space.

    python -m gen_jax.inception_weights --torch_weights=pt_inception-2015-12-05-6726825d.pth --out=inception_fid.npz

Reading a .pth needs torch (an .npz keyed by the torch names does not). The work is
`evaluation.inception.convert`; bad input is one `error:` line (exit status 2).
"""
from __future__ import annotations

import argparse
import sys

from gen_jax.errors import UserError
from gen_jax.evaluation.inception import TORCH_WEIGHTS_FILE, convert, variable_shapes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gen_jax.inception_weights",
                                     description="Convert pytorch-fid's InceptionV3 weights for gen_jax.")
    parser.add_argument("--torch_weights", required=True, help=f"pytorch-fid's {TORCH_WEIGHTS_FILE} (or an .npz "
                                                                "keyed by its torch names)")
    parser.add_argument("--out", default="inception_fid.npz", help="the .npz to write")
    args = parser.parse_args(argv)
    try:
        out = convert(args.torch_weights, args.out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{out}: {len(variable_shapes())} arrays. Score with: python -m gen_jax.evaluate --workdir=RUN "
          f"--extractor=inception --inception_weights={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
