"""Reference-model recipes: one JSON file per model, with `tiny` and `base` sizes.

A recipe is data: constructor and training keyword arguments. `tiny` is what the
tests and the notebooks' small mode use; `base` is what `mmtl-tf train` and the
quickstart use.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def available():
    """Names of the bundled recipes."""
    return sorted(f[:-5] for f in os.listdir(HERE) if f.endswith(".json"))


def load_recipe(name, size="base"):
    """Returns the `size` section of recipe `name` (a bundled name or a path).

    Args:
        name: str. A bundled recipe (see `available()`) or a path to a JSON file.
        size: str. A section of the file, e.g. `"tiny"` or `"base"`.
    """
    recipe = read_recipe(name)
    sizes = [k for k in recipe if not k.startswith("_")]
    if size not in sizes:
        raise ValueError(f"recipe {name!r} has no size {size!r}; sizes: {', '.join(sizes)}.")
    if not isinstance(recipe[size], dict):
        raise ValueError(f"recipe {_path(name)}: size {size!r} must be a JSON object of "
                         f"settings, not {type(recipe[size]).__name__}.")
    return dict(recipe[size])


def _path(name):
    return name if name.endswith(".json") else os.path.join(HERE, f"{name}.json")


def read_recipe(name):
    """The whole recipe `name` (a bundled name or a path): a dict of its
    sizes (and `_`-prefixed comments)."""
    path = _path(name)
    if not os.path.isfile(path):
        if name.endswith(".json"):  # a file of your own ("unknown recipe" did not say so)
            what = "is a folder, not a file" if os.path.isdir(path) else "does not exist"
            raise ValueError(f"recipe file {name}: {what} (a recipe is a bundled name, "
                             f"{', '.join(available())}, or a JSON file of your own).")
        raise ValueError(f"unknown recipe {name!r}; bundled recipes: {', '.join(available())}.")
    try:
        with open(path, encoding="utf-8") as f:
            recipe = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"recipe {path}: not valid UTF-8 JSON ({e}).") from None
    if not isinstance(recipe, dict):
        raise ValueError(f"recipe {path}: a JSON object with one object per size "
                         f"(e.g. \"base\", \"tiny\") is needed, not {type(recipe).__name__}.")
    return recipe
