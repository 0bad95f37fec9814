"""`mmtl-tf` (also `python -m mmtl_tf`): quickstart, train, evaluate, export, bench.

    mmtl-tf quickstart [--out DIR]              every reference model, briefly, one table
    mmtl-tf train TASK [--data default|DIR] [--epochs N] [--out RUN_DIR] ...
    mmtl-tf evaluate RUN_DIR [--split test]
    mmtl-tf export RUN_DIR --saved-model DIR
    mmtl-tf bench NAME [ARGS ...]               a benchmark from bench/ (source checkout)

A bad argument prints one line on stderr and exits with status 2; bad data
(`mmtl_tf.DataError`) prints what is wrong with which file or row and exits
with status 1, and so does a failed download (`mmtl_tf.DownloadError`, which
says how to provide the file offline) or a failed read or write (`OSError`,
e.g. no permission, a full disk). With the environment variable
MMTL_TF_TRACEBACK=1 such errors are raised with their Python traceback instead.
"""

import argparse
import os
import re
import shlex
import signal
import sys
import time
import traceback
import warnings

from mmtl_tf import __version__
from mmtl_tf.errors import (DataError, DataWarning, DownloadError, KeptFilesWarning,
                            RunReplacedWarning, collect_problems)
from mmtl_tf.files import check_can_create_folders, entries, missing_parent, user_path
from mmtl_tf.tasks import (CACHE_SETTING, RUNTIME_SETTINGS, TASKS, names, option_settings,
                           settings, task_recipes)


class _Parser(argparse.ArgumentParser):
    # The parsers of the other tasks (`mmtl-tf train TASK`), for the hint of an
    # option that this one lacks (set by build_parser).
    siblings = {}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # argparse counts "-1" and "-.5" as negative numbers but took "-1e-3"
        # for an option: "--learning-rate -1e-3" said "expected one argument"
        # instead of the option's range message.
        self._negative_number_matcher = re.compile(
            r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

    def error(self, message):
        if message.startswith("the following arguments are required"):
            # `mmtl-tf --bogus` said only "required: COMMAND".
            unknown = [a for a in getattr(self, "_given", ()) if a.startswith("-")
                       and a.split("=", 1)[0] not in self._option_string_actions]
            if unknown:
                message = f"unrecognized arguments: {' '.join(unknown)}; {message}"
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        # Arguments that a sub-command's parser does not know are reported by
        # it, under its own name ("mmtl-tf train text-classifier: error: ..."),
        # not passed up to "mmtl-tf" as argparse does; no parser here takes
        # unknown arguments (bench's ARGS are argparse.REMAINDER).
        self._given = list(sys.argv[1:] if args is None else args)
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}{self._elsewhere(extras)}")
        return namespace, extras

    def _elsewhere(self, extras):
        """"; PROG has no --X (an option of ...)" for unknown options that
        other tasks have, e.g. `--cache` given to text-classifier."""
        hints = []
        for arg in extras:
            option = arg.split("=", 1)[0]
            owners = [name for name, parser in self.siblings.items()
                      if parser is not self and option in parser._option_string_actions]
            if option.startswith("--") and owners:
                name = self.prog.rsplit(" ", 1)[-1]
                hints.append(f"{name} has no {option} (an option of {', '.join(owners)})")
        return "; " + "; ".join(hints) if hints else ""


def _not_empty(what):
    """An argparse type for a path or name option: any value but an empty one
    (`train --out ''` trained into the default runs/TASK, replacing it;
    `--weights ''` meant no weights), which is a usage error: "empty; `what`".
    A leading `~` is the home folder (`user_path`), also where the shell
    left it, quoted: `--out "~/runs/a"` made a folder named `~`."""
    def parse(value):
        if not value.strip():
            raise argparse.ArgumentTypeError(f"empty; {what}")
        return user_path(value)

    return parse


def _existing_dir(value):
    value = user_path(value)
    if not os.path.isdir(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a folder")
    return value


def _data_source(value):
    if value == "default" or value.startswith("tfds:"):
        return value
    value = user_path(value)
    if os.path.exists(value):
        return value
    raise argparse.ArgumentTypeError(
        f"{value!r} is neither 'default' nor an existing folder or data file")


def _number_type(kind, accept, requirement):
    """An argparse type: `kind(value)` (int or float) for which `accept` holds,
    else a usage error saying it must be `requirement`."""
    noun = "an integer" if kind is int else "a number"

    def parse(value):
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not {noun}") from None
        if not accept(number):
            raise argparse.ArgumentTypeError(f"{value!r} must be {requirement}")
        return number

    return parse


_positive_int = _number_type(int, lambda n: n >= 1, "at least 1")
_non_negative_int = _number_type(int, lambda n: n >= 0, "at least 0")
# NumPy's seeds: a larger one failed after TensorFlow loaded, naming no option.
_seed = _number_type(int, lambda n: 0 <= n < 2 ** 32, "from 0 to 2**32 - 1")
_positive_float = _number_type(float, lambda n: 0 < n < float("inf"),
                               "positive and finite")  # "inf" trained to NaN
_fraction = _number_type(float, lambda n: 0 <= n < 1, "at least 0 and below 1")
_vocabulary_size = _number_type(int, lambda n: n >= 3,
                                "at least 3 (padding, the unknown word and one word)")
# For the benchmark scripts' options (bench/): `--sizes 0` or `--repeats 0`
# failed inside them ("need at least one array to concatenate").
positive_int, positive_float, seed_int = _positive_int, _positive_float, _seed


# Task options that may be 0 ("0 skips it"); every other int option must be
# at least 1, `--dropout` a fraction and every other float option positive.
_ZERO_ALLOWED = {"--fine-tune-epochs"}


# BERT-family inputs hold [CLS] and [SEP] around the text: 2 failed after
# TensorFlow loaded (about 11 s), where the parser said "at least 1" of 0.
_bert_sequence_length = _number_type(int, lambda n: n >= 3,
                                     "at least 3 ([CLS], one WordPiece and [SEP])")


def _checked_type(flag, kind, task=None):
    """The argparse type that checks a task option's range, so a bad value is
    a usage error up front instead of an error once training has started."""
    if kind is int and flag == "--sequence-length" and task == "text-classifier":
        return _bert_sequence_length
    if kind is int:
        if flag == "--vocab-size":  # it failed after TensorFlow loaded, not naming the option
            return _vocabulary_size
        return _non_negative_int if flag in _ZERO_ALLOWED else _positive_int
    if kind is float:
        return _fraction if flag == "--dropout" else _positive_float
    return kind


def _cache_value(value):
    if value in ("memory", "none"):
        return value
    if value.strip().lower() in ("memory", "none"):
        # Taken as a folder name, "MEMORY" made a cache folder of that name
        # in the current folder without a word.
        raise argparse.ArgumentTypeError(
            f"{value!r}: write {value.strip().lower()} (lower case) for that choice, or "
            f"./{value.strip()} for a folder of that name")
    value = _not_empty("give memory, none or a folder")(value)
    if os.path.lexists(value) and not os.path.isdir(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither 'memory' nor 'none' nor a folder (it exists and is "
            "not a folder)")
    parent = missing_parent(value)
    if parent:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither 'memory' nor 'none' nor a folder or a new folder in an "
            f"existing one ({parent} does not exist)")
    try:  # before TensorFlow loads, not once the first dataset is built
        check_can_create_folders(value)
    except OSError as e:
        raise argparse.ArgumentTypeError(
            f"{value!r}: cannot create cache folders there ({e.strerror or e}); give memory, "
            "none or a folder you can write")
    return os.path.abspath(value)  # evaluate, from another folder, finds it


_CACHE_HELP = ("where the decoded images / audio are kept between epochs: 'memory' "
               "(default; fastest, about 146 KB per 224 px image, every split, the whole "
               "run), 'none' (decoded again every epoch: least memory, slower epochs) or "
               "DIR (tf.data cache files in a folder of this run inside DIR, removed at "
               "the end: disk instead of memory)")


def _add_cache_option(group, help_text=_CACHE_HELP):
    group.add_argument("--cache", type=_cache_value, metavar="{memory,none,DIR}",
                       help=help_text)


def _add_runtime_options(parser, cache=True):
    g = parser.add_argument_group("runtime")
    g.add_argument("--precision", choices=["float32", "mixed_float16", "mixed_bfloat16"],
                   help="Keras dtype policy (default: float32)")
    g.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="compile with XLA (default: on with a GPU/TPU, off on CPU only)")
    g.add_argument("--seed", type=_seed,
                   help="random seed, 0 to 2**32 - 1 (default: the recipe's)")
    g.add_argument("--deterministic", action="store_true", default=None,
                   help="same seed, same data, same machine: same weights and figures "
                        "(TensorFlow's op determinism; can be slower; Keras then "
                        "compiles without XLA, whatever --jit-compile says; run.json's "
                        "jit_compile_used records it)")
    g.add_argument("--on-error", choices=["raise", "skip"],
                   help="bad files/rows: stop with an error naming them (default) "
                        "or skip them and list them")
    if cache:
        _add_cache_option(g)


def _add_training_options(parser, default_size="base"):
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=_positive_int, help="epochs (default: the recipe's)")
    g.add_argument("--batch-size", type=_positive_int, help="batch size")
    g.add_argument("--learning-rate", type=_positive_float, help="learning rate")
    g.add_argument("--size", choices=["tiny", "base"], default=default_size,
                   help=f"recipe size (default: {default_size}; tiny is for smoke tests)")


def build_parser():
    """The `mmtl-tf` argument parser."""
    parser = _Parser(prog="mmtl-tf", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog="Run `mmtl-tf COMMAND --help` for a command's options.\n\n"
                            "environment:\n"
                            "  MMTL_TF_CACHE=DIR     where downloaded and converted weights "
                            "and data are kept\n"
                            "                        (default: ~/.cache/mmtl_tf)\n"
                            "  MMTL_TF_TRACEBACK=1   show errors with their Python traceback")
    parser.add_argument("--version", action="version", version=f"mmtl_tf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=_Parser)

    quick = sub.add_parser(
        "quickstart", help="train, evaluate and export every reference model briefly "
                           "on the bundled data and print one results table")
    quick.add_argument("--out", default=os.path.join("runs", "quickstart"),
                       type=_not_empty("name a folder for the run folders, or leave --out "
                                       "out for runs/quickstart"),
                       help="folder for the run folders and summary.json (default: "
                            "runs/quickstart)")
    quick.add_argument("--tasks", default=",".join(n for n in names() if TASKS[n].in_quickstart),
                       help="comma-separated tasks to run (default: %(default)s)")
    _add_training_options(quick)
    _add_runtime_options(quick)

    train = sub.add_parser("train", help="train a reference model; writes a run folder")
    tasks = train.add_subparsers(dest="task", metavar="TASK", required=True,
                                 parser_class=_Parser)
    task_parsers = {}
    for spec in TASKS.values():
        p = tasks.add_parser(spec.name, help=spec.help, description=spec.help)
        p.add_argument("--data", type=_data_source,
                       help="'default' (the bundled sample), a folder or a CSV/JSONL file "
                            "of your own (what they hold: 'data:' in the description above and "
                            "the task's README section), or tfds:NAME where the task reads "
                            "TFDS (default: the recipe's)")
        p.add_argument("--out", type=_not_empty(f"name a run folder, or leave --out out for "
                                                f"runs/{spec.name}"),
                       help=f"run folder (default: runs/{spec.name})")
        p.add_argument("--recipe", type=_not_empty(f"name a recipe or a JSON file, or leave "
                                                   f"--recipe out for {spec.recipe}"),
                       default=spec.recipe,
                       help=f"bundled recipe name ({', '.join(task_recipes(spec.recipe))}), "
                            f"or a JSON file of your own whose \"base\"/\"tiny\" settings "
                            f"override {spec.recipe}'s (default: {spec.recipe})")
        _add_training_options(p)
        _add_runtime_options(p, cache=spec.decodes_files)
        g = p.add_argument_group(f"{spec.name} options")
        for flags, kwargs in spec.options:
            if "type" in kwargs:
                kwargs = {**kwargs, "type": _checked_type(flags[0], kwargs["type"], spec.name)}
            elif "action" not in kwargs and "choices" not in kwargs:  # a name or path
                kwargs = {**kwargs, "type": _not_empty(
                    f"give {kwargs.get('metavar', 'a value')}, or leave {flags[0]} out for "
                    "the recipe's")}
            g.add_argument(*flags, **kwargs)
        task_parsers[spec.name] = p
    for p in task_parsers.values():
        p.siblings = task_parsers

    evaluate = sub.add_parser("evaluate", help="evaluate a run folder's model on a split")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", type=_existing_dir,
                          help="a run folder written by `mmtl-tf train`")
    evaluate.add_argument("--split", choices=["train", "validation", "test"], default="test",
                          help="the split to evaluate (default: test)")
    evaluate.add_argument("--data", type=_data_source,
                          help="evaluate on other data (default: the run's)")
    evaluate.add_argument("--on-error", choices=["raise", "skip"],
                          help="bad files/rows: stop with an error naming them or skip "
                               "them and list them (default: as the run was trained)")
    _add_cache_option(evaluate, "memory, none or DIR, as for `train --cache` (default: as "
                                "the run was trained; text-classifier runs decode no files)")

    export = sub.add_parser("export", help="export a run folder's model as a SavedModel "
                                           "that serves raw inputs")
    export.add_argument("run_dir", metavar="RUN_DIR", type=_existing_dir,
                        help="a run folder written by `mmtl-tf train`")
    export.add_argument("--saved-model", required=True, metavar="DIR",
                        type=_not_empty("name the folder to write the SavedModel to"),
                        help="SavedModel folder to write: new, empty or an earlier "
                             "SavedModel (replaced atomically)")

    bench = sub.add_parser("bench", help="run a benchmark from bench/ (source checkout)")
    found = _benchmarks()
    bench.add_argument("name", metavar="NAME",
                       help="benchmark name, e.g. input_pipeline for "
                            "bench/bench_input_pipeline.py"
                            + (f"; here: {', '.join(found)}" if found else
                               " (bench/ of a source checkout)"))
    rest = bench.add_argument("args", nargs=argparse.REMAINDER,
                              help="arguments for the benchmark")
    rest.required = False  # Python 3.11 marks REMAINDER required: "required: NAME, args"
    return parser


def _overrides(args, spec=None, quick=None):
    """The command line's settings for task `spec` (`mmtl-tf train`), or the
    quickstart's shared ones for task `quick`."""
    if quick is not None:
        return {k: v for k, v in _overrides(args).items()
                if k != CACHE_SETTING or quick.decodes_files}
    keys = [k for k in RUNTIME_SETTINGS if k != "data"]
    if spec is None or spec.decodes_files:
        keys.append(CACHE_SETTING)
    if spec is not None:
        keys += ["data", *option_settings(spec)]
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


class _NewModelRetracingFilter:
    """Drops TensorFlow's "N out of the last M calls to ...make_predict_function
    ... triggered tf.function retracing" warning.

    TensorFlow counts traces per *code object*, and every Keras model's predict
    function shares Keras' code: the quickstart builds five models in one
    process and each traces its own predict function once (twice with a
    smaller last batch), so the count crosses TensorFlow's threshold although
    no function is traced more than its shapes require. Other retracing
    warnings (train/test functions, user code) pass.
    """

    @staticmethod
    def filter(record):
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message
                    and "make_predict_function" in message)


def _quiet_tensorflow():
    import logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _NewModelRetracingFilter) for f in logger.filters):
        logger.addFilter(_NewModelRetracingFilter())


def _print_table(rows, file=None, saved_model=True):
    """The results table; `saved_model=False` leaves out the SavedModel column
    (`train` exports nothing: the column was always empty)."""
    file = file or sys.stdout
    headers = ["model", "metric", "value", "baseline", "baseline value", "params",
               "train s", "SavedModel"]
    keys = ["model", "metric", "value", "baseline", "baseline_value", "params",
            "train_seconds", "saved_model"]
    if not saved_model:
        headers, keys = headers[:-1], keys[:-1]

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return "" if v is None else str(v)

    table = [[fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line, file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)), file=file)


def _tfds_refused(prog, task, data):
    """The usage-error line for `--data tfds:NAME` given to a task that reads no
    TFDS dataset from the command line, or None."""
    if not (isinstance(data, str) and data.startswith("tfds:")) or TASKS[task].reads_tfds:
        return None
    readers = ", ".join(t.name for t in TASKS.values() if t.reads_tfds)
    return (f"{prog}: error: --data {data}: the {task} task reads no TFDS dataset from "
            f"the command line (only {readers} does); from Python, the "
            "mmtl_tf.data.load_tfds_* functions load TFDS datasets (README 'Data')")


def _unreplaced(path, what):
    """What an interruption leaves of `path` before a run folder or SavedModel
    (`what`) replaced it: its writers stage it beside `path`, remove the
    staging folder when interrupted and rename it only when it is complete
    (`mmtl_tf.files.atomic_directory`)."""
    if os.path.lexists(path):
        return f"{path} left as it was"
    return f"no {what} written ({path} does not exist)"


def _note_no_xla(prog, config):
    """Says in one line on stderr that `jit_compile: true` is not used when
    `deterministic` is on: under op determinism Keras compiles every model
    without XLA (run.json's `jit_compile_used` records false). The library's
    RuntimeWarning saying the same of each model compiled is then not shown
    (it followed this line with its source location; `main`'s
    `catch_warnings` scopes the filter to the command)."""
    if config.get("deterministic") and config.get("jit_compile") is True:
        print(f"{prog}: note: --deterministic trains without XLA (Keras compiles without it "
              "under op determinism), so --jit-compile is not used; run.json records "
              "\"jit_compile_used\": false.", file=sys.stderr, flush=True)
        # (Keras' reason there is "Model doesn't support `jit_compile=True`",
        # its answer under op determinism.)
        warnings.filterwarnings("ignore", message=r".*: Keras turned jit_compile off \(",
                                category=RuntimeWarning)


def _follow_learning_rate(config, overrides, set_by_file):
    """--target localization trains its head at `localization_learning_rate`
    (the bundled recipe's 1e-4: at 1e-3 its box head saturated). A learning
    rate you give, `--learning-rate` or `learning_rate` in a recipe file of
    your own that does not set `localization_learning_rate`, is the head's
    rate whatever the target (the file's was overridden by the bundled
    1e-4). `overrides` are the command line's settings, `set_by_file` the
    names the recipe file sets (`common.resolve_config`)."""
    if "localization_learning_rate" not in config:
        return
    if overrides.get("learning_rate") is not None:
        config["localization_learning_rate"] = overrides["learning_rate"]
    elif "learning_rate" in set_by_file and "localization_learning_rate" not in set_by_file:
        config["localization_learning_rate"] = config["learning_rate"]


def _check_cache_env():
    """A set MMTL_TF_CACHE that cannot be the cache is a usage error before
    TensorFlow loads (see `mmtl_tf.files.check_cache_root`)."""
    if os.environ.get("MMTL_TF_CACHE"):
        from mmtl_tf.files import check_cache_root

        check_cache_root()


def _train(args):
    spec = TASKS[args.task]
    refused = _tfds_refused(f"mmtl-tf train {spec.name}", spec.name, args.data)
    if refused:  # before TensorFlow is imported (about 9 s)
        print(refused, file=sys.stderr)
        return 2
    _check_cache_env()
    from mmtl_tf.tasks import common, get_task

    overrides, set_by_file = _overrides(args, spec), set()
    config = common.resolve_config(args.recipe, args.size, overrides, base=spec.recipe,
                                   settings=settings(spec.name), set_by_file=set_by_file)
    _follow_learning_rate(config, overrides, set_by_file)
    _note_no_xla("mmtl-tf train", config)
    # Not `args.out or ...`: `--out ''` must not mean the default (the parser
    # refuses it; from Python, check_run_dir does).
    run_dir = os.path.join("runs", spec.name) if args.out is None else args.out
    args.interrupted = f"; {_unreplaced(run_dir, 'run folder')}"
    metrics = get_task(spec.name).train(config, run_dir, verbose=1)
    args.interrupted = f"; the run was written to {run_dir}"
    print(f"\nrun folder: {run_dir}")
    _print_table(get_task(spec.name).summary(metrics), saved_model=False)
    return 0


_SUMMARY = "summary.json"
# The fields of a quickstart's summary.json (before per-task failures were
# recorded it held "rows" and "seconds" only).
_SUMMARY_FIELDS = {"command", "tasks", "rows", "failed", "not_run", "finished", "seconds"}


def _is_quickstart_summary(path):
    """Whether `path` is a summary.json that `mmtl-tf quickstart` wrote."""
    from mmtl_tf.training import read_json

    try:
        summary = read_json(path)
    except (OSError, ValueError):
        return False
    return (isinstance(summary, dict) and isinstance(summary.get("rows"), list)
            and "seconds" in summary and set(summary) <= _SUMMARY_FIELDS)


def _check_quickstart_out(out, chosen, cache=None):
    """Raises a `ValueError` naming the problems unless the quickstart may
    write into `out`: it must be new, empty or a quickstart folder, one that
    holds a summary.json that a quickstart wrote (it writes one before its
    first task, so also an interrupted quickstart's folder is one), each
    chosen task's run folder `out/TASK` must pass the check of `mmtl-tf train
    --out` (new, empty or a run folder; every task's problem is named, once
    `out` itself passes), and a `cache` folder must not be a chosen task's
    run folder or inside one, as for `train`. So the quickstart replaces only
    run folders in a folder of its own: a folder without its summary.json
    that holds run folders (e.g. runs/, where `mmtl-tf train fusion` wrote
    runs/fusion) is refused, naming them, where they were replaced without a
    word. Checked before the first task trains, so a blocked folder of the
    last task is reported at once instead of after the others have trained."""
    from mmtl_tf.tasks import common

    choose = "another --out (the folder the quickstart writes its run folders into)"
    problems = []
    summary = os.path.join(out, _SUMMARY)
    if os.path.lexists(out) and not os.path.isdir(out):
        problems.append(f"{out}: exists and is not a folder; choose a folder for --out")
    elif os.path.lexists(summary) and not _is_quickstart_summary(summary):
        problems.append(f"{summary}: exists and is not a quickstart summary, which the "
                        f"quickstart rewrites; choose {choose}, a new or empty one")
    elif os.path.isdir(out) and entries(out) and not os.path.lexists(summary):
        replaced = [os.path.join(out, name) for name in chosen
                    if os.path.lexists(os.path.join(out, name))]
        if replaced:
            problems.append(
                f"{out}: is not a quickstart folder (no {_SUMMARY} of a quickstart), and "
                f"the quickstart would replace {', '.join(replaced)}, which it did not "
                f"write (e.g. a run of `mmtl-tf train`); choose {choose}, a new or empty "
                "one")
        else:
            problems.append(
                f"{out}: exists, is not empty and is not a quickstart folder (no "
                f"{_SUMMARY} of a quickstart); the quickstart writes its run folders and "
                f"summary.json into --out, so choose {choose}, a new or empty one")
    if not problems:
        for name in chosen:
            try:
                if TASKS[name].decodes_files:
                    common.check_cache_outside(cache, os.path.join(out, name))
                common.check_run_dir(os.path.join(out, name), option=choose)
            except ValueError as e:
                problems.append(str(e).rstrip("."))
    if problems:
        raise ValueError("; ".join(problems) + ".")


def _show_traceback():
    """Whether MMTL_TF_TRACEBACK asks for Python tracebacks instead of one-line errors."""
    return os.environ.get("MMTL_TF_TRACEBACK", "") not in ("", "0")


def _failure_reason(error, show_traceback):
    """The one line that says why a quickstart task failed (the line the CLI
    prints for `error` elsewhere, without its "mmtl-tf COMMAND: " prefix); the
    traceback is printed first for an error the CLI does not report in one
    line (a bug) or under MMTL_TF_TRACEBACK=1."""
    if show_traceback or not _reported(error):
        traceback.print_exception(error, file=sys.stderr)
        return f"{type(error).__name__}: {error} (traceback above)"
    reason = _error_report("-", error)[1][len("-: "):]
    # "fusion failed (train): [Errno 13] ...", not "... (train): error: [Errno 13] ...";
    # "data error: " and "download error: " say more and stay.
    return reason[len("error: "):] if reason.startswith("error: ") else reason


def _quickstart(args):
    chosen = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not chosen:
        print(f"mmtl-tf quickstart: error: --tasks names no task; tasks: {', '.join(TASKS)} "
              "(see --help)", file=sys.stderr)
        return 2
    unknown = [t for t in chosen if t not in TASKS]
    if unknown:
        print(f"mmtl-tf quickstart: error: unknown task(s) {', '.join(unknown)}; "
              f"tasks: {', '.join(TASKS)} (see --help)", file=sys.stderr)
        return 2
    chosen = list(dict.fromkeys(chosen))  # a task named twice runs once
    _check_cache_env()
    # Imported after the checks above, which need no TensorFlow (about 9 s).
    from mmtl_tf.tasks import common, get_task
    from mmtl_tf.training import atomic_write_json

    _check_quickstart_out(args.out, chosen, args.cache)
    show_traceback = _show_traceback()
    out = os.path.abspath(args.out)
    summary_path = os.path.join(args.out, _SUMMARY)
    rows, shown, failed, start = [], [], [], time.perf_counter()

    def write_summary(done, finished=False):
        # Rewritten after every task, so that it lists this run's rows only
        # and, after Ctrl-C, the tasks that were not run (their run folders,
        # if any, are earlier runs').
        atomic_write_json({"command": "mmtl-tf quickstart", "tasks": chosen, "rows": rows,
                           "failed": [f["task"] for f in failed],
                           "not_run": chosen[done:], "finished": finished,
                           "seconds": time.perf_counter() - start}, summary_path)

    os.makedirs(args.out, exist_ok=True)
    write_summary(0)
    _note_no_xla("mmtl-tf quickstart", _overrides(args))
    for done, name in enumerate(chosen):
        spec = TASKS[name]
        print(f"\n=== {name}: {spec.help}", flush=True)
        run_dir = os.path.join(args.out, name)
        stage = "train"
        finished_before = f"{summary_path} lists the {done} task(s) finished before"
        args.interrupted = (f" during {name}: {_unreplaced(run_dir, 'run folder')}; "
                            f"{finished_before}")
        try:
            task = get_task(name)
            config = common.resolve_config(spec.recipe, args.size, _overrides(args, quick=spec))
            task_rows = task.summary(task.train(config, run_dir, verbose=2))
            stage = "export"
            args.interrupted = (f" during {name}'s export: {run_dir} holds the new run "
                                f"without its SavedModel; {finished_before}")
            saved = task.export(run_dir, os.path.join(run_dir, "saved_model"))
        except Exception as e:  # noqa: BLE001 - one task's failure; the others still run
            reason = _failure_reason(e, show_traceback)
            print(f"mmtl-tf quickstart: {name} failed ({stage}): {reason}", file=sys.stderr,
                  flush=True)
            failed.append({"task": name, "model": name, "metric": f"FAILED ({stage})",
                           "stage": stage, "error": reason})
            rows.append(failed[-1])
            shown.append(failed[-1])
        else:
            for row in task_rows:
                # summary.json: relative to its own folder, so it stays right
                # wherever the quickstart ran from and if the folder is moved.
                rows.append({"task": name, **row,
                             "saved_model": os.path.relpath(saved, out)})
                shown.append({**row, "saved_model": os.path.relpath(saved)})
        write_summary(done + 1, finished=done + 1 == len(chosen))
        args.interrupted = f"; {summary_path} lists the {done + 1} task(s) finished"
    total = time.perf_counter() - start
    trained = len(chosen) - len(failed)
    print(f"\nmmtl-tf quickstart: {trained} model(s) trained, evaluated on the held-out "
          f"test split and exported in {total:.0f} s (results in {args.out}/)\n")
    _print_table(shown)
    if failed:
        print(f"\nmmtl-tf quickstart: {len(failed)} of {len(chosen)} task(s) failed:",
              file=sys.stderr)
        for f in failed:  # a DataError's message lists its bad rows on further lines
            reason = f["error"].replace("\n", "\n    ")
            print(f"  {f['task']} ({f['stage']}): {reason}", file=sys.stderr)
        return 1
    return 0


def _evaluate(args):
    from mmtl_tf.tasks import common, get_task

    info = common.load_run(args.run_dir)
    refused = _tfds_refused("mmtl-tf evaluate", info["task"], args.data)
    if refused:
        print(refused, file=sys.stderr)
        return 2
    task = get_task(info["task"])
    with collect_problems(), common.cache_scope(args.cache):  # bad rows and files together
        metrics = task.evaluate(args.run_dir, split=args.split, verbose=1, data=args.data,
                                on_error=args.on_error)
    if hasattr(task, "format_metrics"):  # a task with its own table (e.g. retrieval)
        print(task.format_metrics(metrics, args.split))
        return 0
    where = f"{args.split} of {args.data}" if args.data else args.split
    figures = {k: v for k, v in metrics[args.split].items() if k not in ("rows", "baselines")}
    rows = metrics[args.split].get("rows")
    counted = f" ({rows:,} rows)" if isinstance(rows, int) else ""
    print(f"{where}{counted}: " + ", ".join(f"{k}={v:.4f}" for k, v in figures.items()))
    baselines = common.split_baselines(metrics, args.split)
    for key, (answer, metric) in _CONSTANT_BASELINES.items():
        if baselines.get(key) is not None:
            print(f"baseline: {answer}: {metric}={baselines[key]:.4f}")
    return 0


# An evaluation's baselines (see the tasks' `evaluate`): what one constant
# answer scores on the rows evaluated.
_CONSTANT_BASELINES = {
    "most_common_class_accuracy": ("always the most common class of these rows", "accuracy"),
    "constant_scores_map": ("the same score for every class of every image", "mAP"),
    "mean_box_iou": ("the mean box of these rows for every image", "box_iou"),
}


def _export(args):
    from mmtl_tf.tasks import common, get_task

    info = common.load_run(args.run_dir)
    args.interrupted = f"; {_unreplaced(args.saved_model, 'SavedModel')}"
    path = get_task(info["task"]).export(args.run_dir, args.saved_model)
    args.interrupted = f"; the SavedModel was written to {path}"
    print(f"SavedModel written to {path}")
    print(f"inspect it with: saved_model_cli show --all --dir {shlex.quote(path)}")
    return 0


_BENCH_FOLDER = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                              os.pardir, "bench"))


def _benchmarks():
    """Names of the benchmarks in bench/ (none outside a source checkout)."""
    folder = _BENCH_FOLDER
    return sorted(name[len("bench_"):-len(".py")] for name in
                  (os.listdir(folder) if os.path.isdir(folder) else [])
                  if name.startswith("bench_") and name.endswith(".py"))


def _bench(args):
    import runpy

    script = os.path.join(_BENCH_FOLDER, f"bench_{args.name}.py")
    if not os.path.isfile(script):
        found = _benchmarks()
        where = (f"benchmarks here: {', '.join(found)}" if found else
                 "benchmarks live in bench/ of a source checkout")
        print(f"mmtl-tf bench: error: no benchmark {args.name!r} ({script} does not exist; "
              f"{where})", file=sys.stderr)
        return 2
    sys.argv = [script, *args.args]
    runpy.run_path(script, run_name="__main__")
    return 0


# Python spellings in library messages → the options that set them, and
# the option a command must have for it (None: every command that reads data
# has --on-error).
_CLI_WORDS = (("on_error='skip'", "--on-error skip", None),
              # Without --target (siamese, triplet, matching, and evaluate):
              # advice for a setting the command does not have.
              ("multiclass needs one; use task='multilabel'",
               "the task takes one label per image", "!--target"),
              (", or use task='multilabel' to give an image several classes)", ")",
               "!--target"),
              ("task='multilabel'", "--target multilabel", "--target"),
              ("task='localization' needs crop=False and augment=False",
               "--target localization does not take --augment", "--target"),
              ("pass weights='backbone.weights.h5'", "pass --weights backbone.weights.h5",
               "--weights"),
              ("unfreeze_layers must be", "--unfreeze-layers must be", "--unfreeze-layers"),
              ("give its new place as data=", "give its new place with --data", None),
              ("choose another export folder", "choose another --saved-model folder", None),
              ("image_backbone 'small_cnn' has", "--image-backbone small_cnn has",
               "--image-backbone"),
              ("weights= is for keras.applications backbones; pass weights=None.",
               "--weights is for keras.applications backbones; pass --weights none.",
               "--weights"),
              ("raise sequence_length to use", "raise it with --sequence-length or the "
               "recipe's sequence_length to use", "--sequence-length"))
# The options of the task being trained (set by `main`): a siamese run told
# to "use --target multilabel", which only head-swap has.
_TASK_OPTIONS = set()


def _in_cli_words(message):
    """A library message as a command-line user should read it: the option
    `--on-error skip` where the Python API says `on_error='skip'`,
    `--target multilabel` for `task='multilabel'` (when the task being
    trained has that option; the advice is left out where it has not, and
    in `evaluate`, which cannot change a run's target), and so on."""
    for python, option, needs in _CLI_WORDS:
        if needs is None or needs in _TASK_OPTIONS or (
                needs.startswith("!") and needs[1:] not in _TASK_OPTIONS):
            message = message.replace(python, option)
    return message


def _foreign_origin(error):
    """The file that raised `error` when it is not part of mmtl_tf (e.g. Keras
    or TensorFlow), else None."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return None
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    origin = frames[-1].filename
    if not os.path.isabs(origin):  # compiled code, e.g. numpy/random/_mt19937.pyx
        return origin
    return None if origin.startswith(package) else origin


def _origin_hint(error):
    """" [raised in FILE; ...]" for an error raised outside mmtl_tf, else ""."""
    origin = _foreign_origin(error)
    return f" [raised in {origin}; MMTL_TF_TRACEBACK=1 shows the traceback]" if origin else ""


def _tensorflow_error(error):
    """Whether `error` is a TensorFlow runtime error (`tf.errors.OpError`, e.g.
    `ResourceExhaustedError` for a full disk), without importing TensorFlow."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, tf.errors.OpError)


def _op_error_line(message):
    """The telling line of a TensorFlow error message: not "Graph execution
    error:", "Detected at node ...", a stack trace or the "[[{{node ...}}]]"
    line, e.g. "OOM when allocating tensor with shape[4000,4000,4000] ...";
    of a failed assertion its text and data alone."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    skip = ("Graph execution error", "Detected at node", "<stack traces", "File ", "[[")
    telling = [line for line in lines if not line.startswith(skip)]
    line = (telling or lines or [""])[0]
    # A failed `tf.debugging.Assert` (mmtl_tf's checks in graphs): its text
    # and data, without the iterator's path and the brackets.
    failed = re.search(r"assertion failed: (\[.*\])$",
                       re.sub(r"\s*\[Op:[^\]]*\]\s*$", "", line))
    return failed.group(1)[1:-1].replace("] [", " ") if failed else line


def _reported(error):
    """Whether the CLI reports `error` in one line (see `_error_report`)."""
    return isinstance(error, (ValueError, DownloadError, OSError)) or _tensorflow_error(error)


def _error_report(prog, error):
    """(exit status, the one line on stderr) for an error the CLI reports
    without a traceback: `DataError`, `DownloadError`, `ValueError`,
    `OSError` or a TensorFlow `OpError`."""
    if _tensorflow_error(error):  # one line of a message that may hold op names and traces
        message = _op_error_line(error.message or str(error))
        return 1, f"{prog}: error: {type(error).__name__}: {message}{_origin_hint(error)}"
    if isinstance(error, DataError):
        return 1, f"{prog}: data error: {_in_cli_words(str(error))}"
    if isinstance(error, DownloadError):
        return 1, f"{prog}: download error: {_in_cli_words(str(error))}"
    if isinstance(error, (FileNotFoundError, ValueError)):  # usage errors, mostly
        return 2, f"{prog}: error: {_in_cli_words(str(error))}{_origin_hint(error)}"
    return 1, f"{prog}: error: {error}"  # another OSError: no permission, a full disk


def main(argv=None):
    """Entry point of `mmtl-tf`."""
    args = build_parser().parse_args(argv)
    _quiet_tensorflow()
    spec = TASKS.get(getattr(args, "task", None)) if args.command == "train" else None
    _TASK_OPTIONS.clear()
    _TASK_OPTIONS.update(flag for flags, _ in (spec.options if spec else ()) for flag in flags)
    handler = {"quickstart": _quickstart, "train": _train, "evaluate": _evaluate,
               "export": _export, "bench": _bench}[args.command]
    prog = f"mmtl-tf {args.command}"
    show_traceback = _show_traceback()
    with warnings.catch_warnings():
        plain = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            # A DataWarning lists skipped files for the person at the
            # terminal (a RunReplacedWarning names the run that training
            # replaced, a KeptFilesWarning where your files were kept);
            # where in the CLI's code it was issued does not help.
            if issubclass(category, (DataWarning, RunReplacedWarning, KeptFilesWarning)):
                print(f"{prog}: warning: {_in_cli_words(str(message))}",
                      file=file or sys.stderr)
            else:
                plain(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        with _terminate_as_exit(), _LineEnds() as stdout:
            try:
                return handler(args)
            except (KeyboardInterrupt, _Terminated) as e:
                # Ctrl-C, or SIGTERM (see _terminate_as_exit): one line instead of
                # a traceback through TensorFlow, and what the command leaves
                # behind, as its handler last noted it in `args.interrupted`.
                if show_traceback:
                    raise
                stopped, status = (("interrupted", 128 + signal.SIGINT)
                                   if isinstance(e, KeyboardInterrupt)
                                   else ("terminated (SIGTERM)", e.code))
                stdout.end_line()  # after a progress bar cut short
                print(f"{prog}: {stopped}{getattr(args, 'interrupted', '')}", file=sys.stderr)
                return status
            except Exception as e:  # noqa: BLE001 - reported ones are listed in _reported
                if show_traceback or not _reported(e):
                    raise
                status, line = _error_report(prog, e)
                stdout.end_line()  # not "...loss: 2.1396mmtl-tf train: error: ..."
                print(line, file=sys.stderr)
                return status


class _LineEnds:
    """Within the block, `sys.stdout` notes whether its last write ended a
    line; `end_line()` ends one left open (by a Keras progress bar that an
    error cut short), so that the error report starts on a line of its own."""

    def __enter__(self):
        self.stream, self.open = sys.stdout, False
        outer = self

        class Noting:
            def write(self, text):
                if text:
                    outer.open = not text.endswith("\n")
                return outer.stream.write(text)

            def __getattr__(self, name):
                return getattr(outer.stream, name)

        self.noting = sys.stdout = Noting()
        return self

    def end_line(self):
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False

    def __exit__(self, *exc):
        if sys.stdout is self.noting:
            sys.stdout = self.stream
        return False


class _Terminated(SystemExit):
    """SIGTERM within `_terminate_as_exit`: a `SystemExit` with status 143."""


class _terminate_as_exit:
    """Within the block, SIGTERM (`kill`, `timeout`, a container stopping) exits
    like Ctrl-C does, through Python's clean-up, so an interrupted train or
    export removes its staging folder instead of leaving `.NAME.tmp-…` behind.
    Only in the main thread (elsewhere signal handlers cannot be set)."""

    def __enter__(self):
        self.previous = None
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            try:
                self.previous = signal.signal(signal.SIGTERM, self._exit)
            except ValueError:  # not the main thread
                pass
        return self

    @staticmethod
    def _exit(signum, frame):
        raise _Terminated(128 + signum)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


if __name__ == "__main__":
    sys.exit(main())
