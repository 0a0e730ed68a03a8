"""`python -m wool.keys`: make and manage a CURVE key directory (layout: see `wool._keys`).

python -m wool.keys generate DIR           # DIR/id.key (0600), DIR/id.pub, DIR/trusted/
python -m wool.keys trust DIR KEY|FILE...  # trust a peer's public key (DIR/trusted/*.pub)
python -m wool.keys show DIR               # this key and the keys it trusts
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._keys import SECRET_FILE, TRUSTED_DIR, Keys, check_key, generate_directory, read_key_file, trust_key
from ._printable import printable


def _generate(args: argparse.Namespace) -> int:
    keys = generate_directory(args.directory, force=args.force)
    root = Path(args.directory)
    print(f"wrote {root / SECRET_FILE} (secret, mode 0600) and {root / 'id.pub'}")
    print(f"public key: {keys.public}")
    print(
        "Processes using this directory trust each other. To let another key directory's "
        f"processes in, run `python -m wool.keys trust {root} THEIR/id.pub` (and the reverse "
        "on their side). Start workers with `python -m wool.worker --keys "
        f"{root} ...` and open pools with `wool.WorkerPool(keys={str(root)!r}, ...)`."
    )
    return 0


def _trust(args: argparse.Namespace) -> int:
    if args.name is not None and len(args.keys) != 1:
        raise ValueError("--name names one key; trust the others one at a time")
    for item in args.keys:
        path = Path(item)
        if path.is_file():
            key = read_key_file(path, "public")
            default = path.parent.name if path.name == "id.pub" else path.stem
        else:
            key = check_key(item, f"{item!r} (neither a key file nor a key)")
            default = "key-" + "".join(c for c in key if c.isalnum())[:8]
        written = trust_key(args.directory, key, args.name or default)
        print(f"trusting {key} ({printable(written)})")
    return 0


def _show(args: argparse.Namespace) -> int:
    keys = Keys.load(args.directory)
    print(f"public key: {keys.public}")
    trusted = Path(args.directory) / TRUSTED_DIR
    files = sorted(p for p in trusted.iterdir() if p.suffix in (".pub", ".key")) if trusted.is_dir() else []
    print(f"trusted ({len(files)} files, and itself):")
    for path in files:
        print(f"  {read_key_file(path, 'public')}  {printable(path.name)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wool.keys",
        description="Make and manage CURVE keys for wool: with keys, workers accept only callers "
        "whose public key they trust, callers reach only workers whose key they trust, and every "
        "connection is encrypted.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    generate = commands.add_parser("generate", help="make DIR with a fresh keypair: id.key (secret, 0600), id.pub, trusted/")
    generate.add_argument("directory", metavar="DIR")
    generate.add_argument("--force", action="store_true", help="replace the keys DIR already holds")
    generate.set_defaults(run=_generate)
    trust = commands.add_parser("trust", help="trust public keys (given as z85 text or key files) in DIR/trusted/")
    trust.add_argument("directory", metavar="DIR")
    trust.add_argument("keys", nargs="+", metavar="KEY|FILE")
    trust.add_argument("--name", help="file name for the key in DIR/trusted/ (default: from the file, or the key)")
    trust.set_defaults(run=_trust)
    show = commands.add_parser("show", help="print DIR's public key and the keys it trusts")
    show.add_argument("directory", metavar="DIR")
    show.set_defaults(run=_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (OSError, ValueError) as e:
        print(f"wool keys: {printable(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
