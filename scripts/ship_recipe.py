"""``python scripts/ship_recipe.py RUN_DIR DATASET``: ship the recipe a search found for a built-in
data set (issue 26): ``RUN_DIR/summary.json`` of a study run with ``--set tune.enabled=true``
becomes ``src/umt/configs/recipes/DATASET.yaml``, the layer of settings that set of the data set's
studies run under (``DatasetSpec.recipe``; any key the user sets wins over it).

The search's choice per unit is its best trial on validation, or the cheapest within one
standard error of it (``umt.search.trials``): accuracy first, then cost.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from umt.search.space import settings_of  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.exit("usage: python scripts/ship_recipe.py RUN_DIR DATASET")
    run, name = Path(argv[0]), argv[1]
    summary = json.loads((run / "summary.json").read_text())
    search = summary["search"]
    if search.get("source") != "searched":
        sys.exit(f"{run}: its recipe was not searched (search.source: {search.get('source')})")
    chosen = {unit: entry["chosen"] for unit, entry in search["units"].items()}
    p = summary.get("provenance", {})
    document = {
        "found_by": {
            "command": f"umt run --set data.name={summary['data']['name']} --set tune.enabled=true",
            "date": p.get("date"),
            "git_commit": p.get("git_commit"),
            "trials": search["trials_spent"],
            "pruned": search["pruned"],
            "seconds": search["seconds"],
            "seed": search["seed"],
        },
        "settings": settings_of(chosen),
    }
    head = (
        f"# The recipe umt ships for the built-in data set `{name}`, found by the recipe search\n"
        f"# ({search['trials_spent']} trials on validation); written by scripts/ship_recipe.py.\n"
        "# A layer under your settings: any key you set wins. `--set tune.enabled=true` searches\n"
        "# again.\n"
    )
    out = ROOT / "src" / "umt" / "configs" / "recipes" / f"{name}.yaml"
    out.write_text(head + yaml.safe_dump(document, sort_keys=False))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
