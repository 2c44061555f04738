"""The engine's commands of the `rekd` command line: train, validate, evaluate, explain, data inspect,
presets. The `rekd` parser itself is built in rekd/cli.py (with the service's commands); this module
adds its commands to it (`add_commands`) and runs them (`run`), and imports no web or queue code.

Every expected failure (a config that is refused, a file that is not there, data that cannot be
read) is one message on stderr that names what is wrong and how to fix it, and exit status 2;
a traceback means a bug.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from .config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    apply_overrides,
    load_config_file,
    parse_config,
    teacher_mismatch,
)
from .data.registry import DATASETS
from .data.spec import parse_spec
from .presets import PRESETS, get_preset
from .store.runstore import new_run_id

# The commands that train, load data or rebuild a model import that code (and torch, seconds to
# import) when they run, not here: the parser, `rekd --help` and `rekd presets` stay instant.


def _progress(total_hint: int | None = None) -> tuple[Any, Any]:
    bar = tqdm(total=total_hint, unit="step", dynamic_ncols=True)
    state: dict[str, Any] = {}

    def say(msg: str) -> None:
        bar.write(msg, file=sys.stderr)  # tqdm.write defaults to stdout, which carries the JSON result

    def on_event(ev: dict[str, Any]) -> None:
        kind = ev["type"]
        if kind == "start":
            bar.reset(total=ev["total_steps"])
            bar.update(ev["step"])
            state["step"] = ev["step"]
            say(f"run {ev.get('mode')} on {ev['device']}: {ev['n_train']} train / {ev['n_dev']} dev / "
                      f"{ev['n_test']} test, {ev['params']['student']:,} student parameters"
                      + (" (resumed)" if ev["resumed"] else ""))
        elif kind == "log":
            bar.update(ev["step"] - state.get("step", 0))
            state["step"] = ev["step"]
            post = {"tau": f"{ev['tau']:.3g}", "loss": f"{ev['loss']['total']:.3f}",
                    "acc": f"{ev['train_acc']:.3f}"}
            if "selected" in ev:
                post["sel%"] = f"{100 * ev['selected']['mean']:.1f}"
            if "iou" in ev:
                post["iou"] = f"{ev['iou']:.2f}"
            bar.set_postfix(post, refresh=True)
        elif kind == "eval":
            sel = f", selected {100 * ev['selected']['mean']:.1f} %" if "selected" in ev else ""
            say(f"step {ev['step']}: dev accuracy {ev['accuracy']:.4f}, macro-F1 {ev['macro_f1']:.4f}{sel}"
                + _quality_brief(ev))
            for w in ev.get("warnings", []):
                say(f"  warning: {w['message']} ({w['detail']})")
        elif kind == "test":
            say(f"test (best dev checkpoint, step {ev['checkpoint_step']}): accuracy {ev['accuracy']:.4f}, "
                      f"macro-F1 {ev['macro_f1']:.4f}")
        elif kind == "finished":
            bar.close()

    return bar, on_event


def _read_config_file(name: str) -> dict[str, Any]:
    """The CONFIG file's mapping; ConfigError naming the file (and line) for anything unreadable."""
    path = Path(name)
    if not path.exists():
        raise ConfigError(f"{name}: no such config file (give the path of a YAML or JSON file, or use --preset "
                          "NAME; see `rekd presets`)")
    if path.is_dir():
        raise ConfigError(f"{name}: is a folder; give the path of a YAML or JSON config file")
    try:
        return load_config_file(path)
    except UnicodeDecodeError as err:
        raise ConfigError(f"{name}: not a text file (byte {err.start} is not UTF-8); a config is YAML or JSON "
                          "text") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(p) for p in (err.context, err.problem) if p)
        raise ConfigError(f"{name}: not valid YAML{where}: {what}. Fix the syntax there (a config is a mapping of "
                          "sections, e.g. `mode: re` then `train:` with `max_steps: 100` indented below it)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{name}: not valid YAML: {err}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{name}: not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}. Fix the "
                          "syntax there (or give the config as YAML, in a .yaml file)") from None
    except OSError as err:
        raise ConfigError(f"{name}: cannot be read ({err.strerror or err})") from None


def _config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """CONFIG or --preset, with --set overrides (train and validate)."""
    if args.preset:
        if args.config:
            raise ConfigError("give a CONFIG file or --preset, not both")
        return get_preset(args.preset).build(args.set)
    if args.config:
        return parse_config(apply_overrides(_read_config_file(args.config), args.set))
    raise ConfigError("give a CONFIG file or --preset NAME (see `rekd presets`)")


def _check_local_data(dataset: str, field: str | None = "data.dataset") -> None:
    """A folder:, csv: or jsonl: dataset's path must exist on this machine (the CLI reads it here)."""
    spec = parse_spec(dataset)
    if spec is None or spec.kind == "hf":
        return
    path = Path(spec.target)
    folder = spec.kind == "folder"
    if not path.exists():
        parent = next((p for p in path.parents if p.is_dir()), None)
        hint = f" ({parent} exists; check the rest of the path)" if parent is not None and parent != Path("/") else ""
        where = f"{field}: " if field else ""
        raise ConfigError(f"{where}{path}: no such {'folder' if folder else 'file'} on this machine{hint}; give the "
                          f"absolute path of the {'folder of class folders' if folder else 'file'}, as "
                          f"{spec.kind}:/abs/path")


def cmd_train(args: argparse.Namespace) -> int:
    from .train.trainer import train

    cfg = _config_from_args(args)
    if parse_spec(cfg.data.dataset) is not None:
        # user data: a malformed file is a message now, not a failed run directory
        from .data.load import load_for_config

        _check_local_data(cfg.data.dataset)
        load_for_config(cfg)  # cached: the trainer's load reuses it
    run_dir = Path(args.run_dir) if args.run_dir else Path(args.runs_root) / new_run_id(cfg.name)
    print(f"run directory: {run_dir}", file=sys.stderr)
    _, on_event = _progress()
    results = train(cfg, run_dir, on_event=on_event)
    print(json.dumps({"run_dir": str(run_dir), **results}, indent=2))
    return 0


def _problems(cfg: ExperimentConfig) -> tuple[list[str], list[str]]:
    """What `rekd validate` checks beyond the fields: (problems, facts for the summary)."""
    from .data.load import load_for_config

    problems: list[str] = []
    facts: list[str] = []
    classes: list[str] | None = None
    try:
        _check_local_data(cfg.data.dataset)
        bundle = load_for_config(cfg)
        classes = list(bundle.class_names)
        facts.append(f"{len(bundle.train)} train / {len(bundle.dev)} dev / {len(bundle.test)} test, "
                     f"{len(classes)} classes")
    except (ConfigError, ValueError, RuntimeError, OSError) as err:  # DatasetError, DatasetUnavailable...
        msg = str(err)
        problems.append(msg if msg.startswith("data.") else f"data.dataset: {msg}")
    if cfg.mode == "rekd" and cfg.model.teacher_run:
        try:
            facts.append(f"teacher {_checked_teacher(cfg, classes)}")
        except (ConfigError, ValueError, RuntimeError, OSError) as err:
            problems.append(f"model.teacher_run: {err}")
    try:
        from .checks import count_model_parameters

        n = count_model_parameters(cfg, len(classes) if classes else None)
        facts.append(f"{n:,} parameters")
    except (ValueError, RuntimeError, OSError) as err:  # RunRefused names its field
        problems.append(str(err))
    return problems, facts


def _checked_teacher(cfg: ExperimentConfig, classes: list[str] | None) -> str:
    """The teacher run's name, after checking it can teach this config; ValueError saying why not."""
    from .analysis.explain import load_run

    path = Path(cfg.model.teacher_run or "")
    if not path.is_dir():
        raise ValueError(f"{path}: no such run directory on this machine (give the directory `rekd train` made "
                         "for the RE teacher)")
    if not (path / "config.json").is_file():
        raise ValueError(f"{path}: not a run directory (no config.json)")
    try:
        teacher = load_run(path, cfg.model.teacher_checkpoint)
    except FileNotFoundError:
        raise ValueError(f"{path}: the teacher has no checkpoint yet (train it first)") from None
    problem = teacher_mismatch(cfg, teacher.config, student_classes=classes, teacher_classes=teacher.class_names)
    if problem:
        raise ValueError(problem)
    return f"{path.name} (step {teacher.step})"


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a config, its dataset and its teacher run as `rekd train` would, without training."""
    what = args.config or f"preset {args.preset}"
    cfg = _config_from_args(args)
    problems, facts = _problems(cfg)
    if problems:
        print(f"rekd: {what}: not valid:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    steps = f"{cfg.train.max_steps} steps" if cfg.train.max_steps else f"{cfg.train.epochs:g} epochs"
    print(f"{what}: valid: {cfg.name}, {cfg.task} {cfg.mode} on {cfg.data.dataset} ({', '.join(facts)}), "
          f"student {cfg.model.student.kind}, {steps}")
    return 0


class InputError(ValueError):
    """An input to explain that is not there or cannot be read (exit status 2, one message)."""


def _explain_target(args: argparse.Namespace) -> Any:
    """INPUT as the text or image to explain: --text takes it as the text; else it must be a file."""
    from .data.inputs import decode_utf8

    if args.text:
        return decode_utf8(os.fsencode(args.input), what="the text given")
    path = Path(args.input)
    if not path.exists():
        raise InputError(f"{args.input}: no such file; give an image file or a .txt file, or pass --text to "
                         "explain INPUT itself as the text")
    if path.is_dir():
        raise InputError(f"{args.input}: is a folder; give one image file or a .txt file")
    if path.suffix.lower() == ".txt":
        return decode_utf8(path.read_bytes(), what=str(path))
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{args.input}: not an image that can be read ({type(err).__name__}); give a PNG, JPEG, "
                         "GIF, BMP or WEBP image, or a text in a .txt file") from None
    return image


def cmd_explain(args: argparse.Namespace) -> int:
    from .analysis.explain import explain, load_run

    loaded = load_run(args.run, args.checkpoint)  # the run first: "no checkpoint" before any input problem
    result = explain(loaded, _explain_target(args), which=args.checkpoint)
    print(json.dumps(result.to_dict(compact=not args.full), indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """A finished run, out of rekd: a Hugging Face-format model folder (--format hf OUT) or its logged
    events replayed into an experiment tracker (--to tensorboard|mlflow)."""
    if (args.format is None) == (args.to is None):
        raise ValueError("export: give exactly one of --format hf OUT or --to tensorboard|mlflow")
    if args.format is not None:
        # `RUN --format hf OUT` hands OUT to --format (argparse has matched the optional positional
        # before it), `RUN OUT --format hf` to `out`: both are accepted
        fmt, rest = args.format[0], args.format[1:]
        if fmt != "hf":
            raise ValueError(f"export --format: {fmt!r}; allowed: hf")
        if len(rest) + bool(args.out) > 1:
            raise ValueError("export --format hf: give one output folder, e.g. `rekd export RUN --format hf OUT`")
        out = rest[0] if rest else args.out
        if not out:
            raise ValueError("export --format hf: give the output folder, e.g. `rekd export RUN --format hf OUT`")
        from .analysis.hub_export import export_hf

        where: Path | str = export_hf(Path(args.run), Path(out))
    else:
        from .tracking import export_run

        where = export_run(Path(args.run), args.to, uri=args.tracking_uri)
    print(where)
    return 0


def _quality_brief(ev: dict[str, Any]) -> str:
    """', plausibility F1 …, distinct …, probe …' for an eval event (empty for CLS runs)."""
    parts = []
    if ev.get("plausibility"):
        parts.append(f"on evidence P {ev['plausibility']['precision']:.2f} (random "
                     f"{ev['plausibility']['random']['precision']:.2f})")
    if ev.get("input_dependence"):
        parts.append(f"distinct masks {100 * ev['input_dependence']['distinct_share']:.0f} %")
    if ev.get("probe"):
        parts.append(f"mask-only probe {ev['probe']['accuracy']:.2f} (chance {ev['probe']['chance']:.2f})")
    return "; " + ", ".join(parts) if parts else ""


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def format_evaluation(r: dict[str, Any]) -> str:
    """`rekd evaluate`'s report: one figure per line, each with what it is compared against."""
    lines = [f"{r['run']} ({r['mode']}, {r['dataset']}): {r['split']} split, {r['n']} examples, "
             f"{r['checkpoint']} checkpoint (step {r['step']})",
             f"  accuracy            {_pct(r['accuracy'])}   macro-F1 {_pct(r['macro_f1'])}"]
    if r.get("selected"):
        sel = r["selected"]
        lines.append(f"  selected            {_pct(sel['mean'])} of positions (std {_pct(sel['std'])})")
    f = r.get("faithfulness")
    if f:
        lines.append(f"  faithfulness        comprehensiveness {f['comprehensiveness']:.3f} (higher: the rationale was "
                     f"needed), sufficiency {f['sufficiency']:.3f} (lower: it suffices)")
    pl = r.get("plausibility")
    if pl:
        who = "agreement with your annotations" if pl.get("ground_truth") == "annotations" else "on the evidence"
        line = (f"  plausibility        {who} ({pl['n']} examples): precision {pl['precision']:.3f} "
                f"(random {'tokens' if 'iou_f1' in pl else 'patches'} at the same size "
                f"{pl['random']['precision']:.3f}), recall {pl['recall']:.3f}, "
                f"F1 {pl['f1']:.3f} (random {pl['random']['f1']:.3f}), IoU {pl['iou']:.3f}")
        if "iou_f1" in pl:
            line += f", IOU-F1 {pl['iou_f1']:.3f}"
        lines.append(line)
    dep = r.get("input_dependence")
    if dep:
        masks = "mask" if dep["distinct"] == 1 else "masks"
        lines.append(f"  input dependence    {dep['distinct']} distinct {masks} of {dep['n']} "
                     f"({_pct(dep['distinct_share'])}), mean pairwise Jaccard distance {dep['jaccard_distance']:.3f}")
        fixed = (f"  best fixed mask     {dep['fixed_size']} positions, chosen for {_pct(dep['fixed_share'])} of "
                 f"inputs; the predictor fed it for every input: accuracy {_pct(dep['fixed_accuracy'])}")
        if dep.get("fixed_plausibility"):
            fixed += f", precision on evidence {dep['fixed_plausibility']['precision']:.3f}"
        lines.append(fixed)
    pr = r.get("probe")
    if pr:
        gt = "" if pr.get("gt_accuracy") is None else f"; on the ground-truth masks {_pct(pr['gt_accuracy'])}"
        lines.append(f"  mask-only probe     {_pct(pr['accuracy'])} held-out accuracy from the mask alone "
                     f"({pr['folds']}-fold logistic regression; chance {_pct(pr['chance'])}{gt})")
    for w in r.get("warnings", []):
        lines.append(f"  warning: {w['message']} ({w['detail']})")
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .train.evaluate import evaluate_run

    result = evaluate_run(args.run, split=args.split, which=args.checkpoint)
    print(json.dumps(result, indent=2) if args.json else format_evaluation(result))
    return 0


def cmd_data_inspect(args: argparse.Namespace) -> int:
    from .data.load import inspect_dataset

    _check_local_data(args.spec, field=None)
    spec = parse_spec(args.spec)
    task = args.task or (spec.modality if spec is not None and spec.modality else None)
    if task is None:
        task = DATASETS[args.spec].modality if args.spec in DATASETS else "text"
    data = DataConfig(dataset=args.spec, text_column=args.text_column, label_column=args.label_column,
                      split_column=None if args.split_column == "" else args.split_column,
                      image_column=args.image_column, dev_fraction=args.dev_fraction)
    summary = inspect_dataset(data, task, image_size=args.image_size, in_chans=args.in_chans)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['name']}: {summary['modality']}, {len(summary['class_names'])} classes, "
          + ", ".join(f"{n} {s}" for s, n in summary["counts"].items())
          + f" (read and checked in {summary['seconds']:.2f} s)")
    width = max(len(c) for c in summary["class_names"])
    for c, per in summary["per_class"].items():
        print(f"  {c:<{width}}  " + "  ".join(f"{s} {n:>6}" for s, n in per.items()))
    gt, counts = summary.get("ground_truth") or {}, summary["counts"]
    if any(gt.values()):
        note = ("plausibility scores rationales against the benchmark's evidence" if summary["kind"] == "registry"
                else "agreement with your annotations is reported as plausibility")
        print("ground truth: " + ", ".join(f"{gt.get(s, 0)} of {n} {s}" for s, n in counts.items())
              + f" examples ({note})")
    elif summary["kind"] in ("folder", "csv", "jsonl"):
        print("ground truth: none (masks beside images, x.png + x.mask.png, or a rationale column; see docs/data.md)")
    print("examples:")
    for ex in summary["examples"]:
        shown = ex.get("text") or ex.get("source") or ""
        print(f"  [{ex['split']}] {ex['label']}: {shown}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    width = max(len(n) for n in PRESETS)
    for name, preset in PRESETS.items():
        if args.offline and not preset.offline:
            continue
        print(f"{name:<{width}}  {preset.summary}")
    return 0


def add_commands(sub: Any) -> None:
    """Add the engine's subcommands to `sub` (what `add_subparsers()` returned); each sets `func`."""
    t = sub.add_parser("train", help="train (or resume) one run")
    t.add_argument("config", nargs="?", help="YAML or JSON config file")
    t.add_argument("--preset", help="a preset name (see `rekd presets`)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set optim.lr=3e-4 (repeatable)")
    t.add_argument("--run-dir", help="the run directory (an existing one is resumed)")
    t.add_argument("--runs-root", default="runs", help="where new run directories go (default: ./runs)")
    t.set_defaults(func=cmd_train)

    va = sub.add_parser("validate", help="check a config (its fields, dataset, teacher run and model) without "
                        "training: one line if it would train, else every problem",
                        description="Exit 0 with a one-line summary, or 2 with one message per problem.")
    va.add_argument("config", nargs="?", help="YAML or JSON config file")
    va.add_argument("--preset", help="a preset name (see `rekd presets`)")
    va.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config field, as for `rekd train` (repeatable)")
    va.set_defaults(func=cmd_validate)

    e = sub.add_parser("explain", help="explain one input with a trained run")
    e.add_argument("run", help="run directory, or an exported model folder (rekd export RUN --format hf OUT)")
    e.add_argument("input", help="an image file, a .txt file, or (with --text) the text itself")
    e.add_argument("--text", action="store_true", help="treat INPUT as the text to explain")
    e.add_argument("--checkpoint", default="best", choices=["best", "last"])
    e.add_argument("--full", action="store_true", help="include per-position probabilities and the masked input")
    e.set_defaults(func=cmd_explain)

    x = sub.add_parser("export", help="share a run: a Hugging Face-format model folder, or its events in "
                       "TensorBoard or MLflow")
    x.add_argument("run", help="run directory")
    x.add_argument("out", nargs="?", help="with --format hf: the folder to write")
    x.add_argument("--format", nargs="+", metavar=("hf", "OUT"),
                   help="hf: config.json, model.safetensors, preprocessing settings and a model card in OUT, "
                   "loadable with rekd_core.store.hub.RekdModel.from_pretrained, explained by `rekd explain OUT "
                   "INPUT`; a previous export at OUT is replaced (docs/sharing.md)")
    x.add_argument("--to", choices=["tensorboard", "mlflow"], help="replay the run's events.jsonl (scalars, config, "
                   "rationale pictures) into a tracker: tensorboard replaces earlier event files there, mlflow adds "
                   "a new MLflow run each time (docs/tracking.md)")
    x.add_argument("--tracking-uri", help="--to tensorboard: a log folder, written as DIR/<run id> (default: "
                   "RUN/tensorboard); --to mlflow: the tracking URI (default: MLFLOW_TRACKING_URI, else "
                   "sqlite:///mlflow.db in the current folder)")
    x.set_defaults(func=cmd_export)

    ev = sub.add_parser("evaluate", help="score a trained run: accuracy, faithfulness, plausibility, input "
                        "dependence and the mask-only probe")
    ev.add_argument("run", help="run directory")
    ev.add_argument("--split", default="test", choices=["dev", "test"])
    ev.add_argument("--checkpoint", default="best", choices=["best", "last"])
    ev.add_argument("--json", action="store_true", help="print the figures as JSON")
    ev.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("data", help="your own data: check a folder of images, a CSV/JSONL of texts, an HF dataset")
    dsub = d.add_subparsers(dest="data_command", required=True)
    di = dsub.add_parser("inspect", help="read and check a dataset as training would; print its summary",
                         description="SPEC: a registry name, folder:/abs/dir, csv:/abs/file.csv, "
                                     "jsonl:/abs/file.jsonl or hf:<id>[:<config>]")
    di.add_argument("spec", help="the dataset, as data.dataset takes it")
    di.add_argument("--task", choices=["vision", "text"], help="default: from the kind (folder: vision; csv, jsonl: "
                                                              "text; hf: text)")
    di.add_argument("--text-column", default="text")
    di.add_argument("--label-column", default="label")
    di.add_argument("--split-column", default="split", help="a train/dev/test column, used if present ('' = none)")
    di.add_argument("--image-column", default="image", help="hf: the column holding the images")
    di.add_argument("--image-size", type=int, default=224, help="the student's img_size (images are resized to it)")
    di.add_argument("--in-chans", type=int, default=3, choices=[1, 3], help="the student's in_chans")
    di.add_argument("--dev-fraction", type=float, default=0.1)
    di.add_argument("--json", action="store_true", help="print the summary as JSON")
    di.set_defaults(func=cmd_data_inspect)

    p = sub.add_parser("presets", help="list the presets, one line each")
    p.add_argument("--offline", action="store_true", help="only those that run without a network")
    p.set_defaults(func=cmd_presets)


def setup_logging(verbose: bool = False) -> None:
    """Log at INFO with -v, else WARNING, on stderr."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def run(args: argparse.Namespace) -> int:
    """Run a parsed command (its `func`), turning expected errors into one message and exit status 2."""
    try:
        return int(args.func(args))
    except ConfigError as err:
        print(f"rekd: {err}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as err:  # incl. DatasetUnavailable: says how to get it
        print(f"rekd: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file or folder that is not there or cannot be read or written
        where = f"{err.filename}: " if err.filename else ""
        print(f"rekd: {where}{err.strerror or err}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """The engine's commands alone, run in-process (tests, notebooks): what `rekd` does for them.

    The `rekd` command is rekd/cli.py's `main`, which has the service's commands too."""
    ap = argparse.ArgumentParser(prog="rekd")
    add_commands(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(argv)
    setup_logging()
    return run(args)
