"""What an install adds to an empty environment: the package with each set of extras, and
the official `wavespeed` SDK beside it, measured on the disk of this environment.

    python benchmarks/install_size.py

Each set is the closure of its requirements (markers evaluated here, extras followed),
and each distribution's size is what its files take on the disk, compiled bytecode
included: the folders it installed whole, and its loose files. No network: everything
measured is installed in this environment already (`pip install -e '.[dev]'` has it all).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

SETS = {
    "wavespeed-outpaint (the SDK and the command line)": ("wavespeed-outpaint", ()),
    "  + [cli]": ("wavespeed-outpaint", ("cli",)),
    "  + [audio]": ("wavespeed-outpaint", ("audio",)),
    "  + [audio,cli] (the demo's set)": ("wavespeed-outpaint", ("audio", "cli")),
    "  + [s3]": ("wavespeed-outpaint", ("s3",)),
    "wavespeed (the official SDK)": ("wavespeed", ()),
}
RESULTS = Path(__file__).parent / "results"


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(name: str, extras: tuple[str, ...]) -> set[str]:
    """The distributions `name[extras]` brings, itself included."""
    found: set[str] = set()
    todo = [(name, extras)]
    while todo:
        dist_name, wanted = todo.pop()
        dist = metadata.distribution(dist_name)
        found.add(_key(dist.metadata["Name"]))
        for text in dist.requires or ():
            req = Requirement(text)
            needed = req.marker is None or any(
                req.marker.evaluate({"extra": extra}) for extra in (*wanted, "")
            )
            # A distribution once; again when asked for with extras (theirs are new).
            if needed and (_key(req.name) not in found or req.extras):
                todo.append((req.name, tuple(req.extras)))
    return found


def size_mb(key: str) -> float:
    """What the distribution takes on the disk: the top folders it owns, its loose files
    and their bytecode."""
    dist = metadata.distribution(key)
    site = Path(str(dist.locate_file("")))
    tops: set[Path] = set()
    total = 0
    for file in dist.files or ():
        parts = Path(str(file)).parts
        if parts[0].startswith(".."):  # a script in the environment's bin/
            path = (site / Path(str(file))).resolve()
            total += path.stat().st_size if path.is_file() else 0
        elif len(parts) > 1 and parts[0] != "__pycache__":
            tops.add(site / parts[0])
        else:
            loose = site / Path(*parts)
            total += loose.stat().st_size if loose.is_file() else 0
    if key == "wavespeed-outpaint" and not any(t.name == "wavespeed_outpaint" for t in tops):
        # An editable install (this checkout): the package is measured where it is.
        tops.add(Path(__file__).resolve().parent.parent / "wavespeed_outpaint")
    for top in tops:
        if top.is_dir() and not top.is_symlink():
            total += sum(f.stat().st_size for f in top.rglob("*") if f.is_file())
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    rows = []
    for label, (name, extras) in SETS.items():
        dists = closure(name, extras)
        mb = sum(size_mb(key) for key in dists)
        rows.append({"set": label.strip(), "mb": round(mb, 1), "distributions": sorted(dists)})
        print(f"{label:52} {mb:6.1f} MB  ({len(dists)} distributions)")
    biggest = sorted(
        ((size_mb(key), key) for key in closure("wavespeed-outpaint", ("audio", "cli"))),
        reverse=True,
    )[:6]
    print("largest: " + ", ".join(f"{key} {mb:.1f} MB" for mb, key in biggest))
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        doc = {"python": sys.version.split()[0], "platform": os.uname().machine, "sets": rows}
        (RESULTS / "install_size.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
