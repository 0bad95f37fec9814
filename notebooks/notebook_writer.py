"""Command line shared by the notebook generators in this folder.

    python notebooks/GENERATOR.py            # rewrite the notebook beside it
    python notebooks/GENERATOR.py --check    # exit 1 if the notebook differs
    python notebooks/GENERATOR.py --out P    # write somewhere else

Cells keep the ids of the notebook they replace (cell by cell, in order), so
that regenerating an unchanged notebook rewrites the same bytes and a diff
shows only the cells that changed.
"""

import argparse
import os
import sys

import nbformat


def _with_kept_ids(nb, previous_path):
    """Gives `nb`'s cells the ids of the cells at the same places in `previous_path`."""
    if not os.path.exists(previous_path):
        return nb
    try:
        previous = nbformat.read(previous_path, as_version=4)
    except Exception:  # an unreadable old file is simply replaced
        return nb
    for cell, old in zip(nb.cells, previous.cells):
        if "id" in old:
            cell["id"] = old["id"]
    return nb


def render(nb, previous_path):
    """The notebook's text as `nbformat.write` writes it, with the ids kept."""
    return nbformat.writes(_with_kept_ids(nb, previous_path)) + "\n"


def main(build, filename, description, argv=None):
    """Parses the generator's arguments, then writes or checks the notebook.

    Args:
        build: callable returning the `nbformat` notebook.
        filename: the notebook's file name in this folder.
        description: the generator's docstring (shown by `--help`).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, filename)
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=default,
                        help=f"where to write the notebook (default: {default})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if --out differs from what "
                             "this generator writes")
    args = parser.parse_args(argv)
    text = render(build(), args.out)
    if args.check:
        try:
            with open(args.out, encoding="utf-8") as f:
                current = f.read()
        except OSError as error:
            print(f"{args.out}: cannot read ({error.strerror})", file=sys.stderr)
            return 1
        if current != text:
            print(f"{args.out} differs from what {os.path.basename(sys.argv[0])} "
                  "writes: regenerate it", file=sys.stderr)
            return 1
        print(f"{args.out}: identical")
        return 0
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, args.out)
    print(args.out)
    return 0
