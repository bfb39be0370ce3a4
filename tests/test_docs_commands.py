"""The command lines in README.md and docs/*.md run as typed in a fresh shell after set-up.

Every line of every ```bash block is checked without running it: a ``make`` target exists (with its
variables, and its ``ARGS`` checked against the command the target runs), a ``logah`` subcommand
and its ``--flags`` parse, its ``key=value`` overrides are keys of the command's config schema,
a ``python script.py`` exists and knows its ``--flags``, and a block that calls ``logah``,
``python`` or ``pip`` first runs ``source .venv/bin/activate`` (a fresh shell has no ``logah``).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from logah.cli.main import build_parser
from logah.config import ConfigError, load_config
from logah.config.model import ModelOnlyConfig
from logah.config.runs import FinetuneConfig, TrainGHNConfig

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
ACTIVATE = "source .venv/bin/activate"
NEEDS_VENV = ("logah", "python", "pip")  # found only once .venv/bin is on PATH
# Which config schema each config-driven subcommand loads; `model.` is prepended to bare keys of
# the model-only commands (as they do). test_every_config_command_has_a_schema keeps it complete.
SCHEMAS = {"finetune": (FinetuneConfig, ""), "train-ghn": (TrainGHNConfig, ""),
           "predict": (ModelOnlyConfig, "model."), "summary": (ModelOnlyConfig, "model."),
           "graph": (ModelOnlyConfig, "model.")}


class DocLineError(AssertionError):
    """A documented command that would not run as typed (the message says why)."""


def bash_blocks(path: Path) -> list[list[str]]:
    """The command lines of each ```bash block (continuations joined, blank/comment lines out)."""
    blocks = re.findall(r"^```bash\n(.*?)^```", path.read_text(), flags=re.S | re.M)
    out = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        out.append([ln.strip() for ln in joined.splitlines()
                    if ln.strip() and not ln.strip().startswith("#")])
    return out


# ---- make --------------------------------------------------------------------------------------
@cache
def makefile() -> tuple[dict[str, list[str]], dict[str, str]]:
    """(target -> recipe lines, variable -> default) of the Makefile."""
    targets: dict[str, list[str]] = {}
    variables: dict[str, str] = {}
    current = None
    for line in (REPO / "Makefile").read_text().splitlines():
        if line.startswith("\t") and current:
            targets[current].append(line.strip().lstrip("@"))
            continue
        var = re.match(r"^(?:export\s+)?([A-Za-z_]+)\s*(?:\?|:)?=\s*(.*)$", line)
        rule = re.match(r"^([a-zA-Z][\w-]*):(?!=)", line)
        if var:
            variables[var.group(1)], current = var.group(2).strip(), None
        elif rule:
            current = rule.group(1)
            targets[current] = []
        elif not line.startswith("\t"):
            current = None
    return targets, variables


def check_make(tokens: list[str]) -> None:
    targets, variables = makefile()
    names = [t for t in tokens[1:] if "=" not in t]
    given = dict(t.split("=", 1) for t in tokens[1:] if "=" in t)
    if len(names) != 1 or names[0] not in targets:
        raise DocLineError(f"make: unknown target {' '.join(names) or '(none)'} "
                           f"(targets: {', '.join(sorted(targets))})")
    for name in given:
        if name not in variables:
            raise DocLineError(f"make: {name}= is not a Makefile variable")
    values = {**variables, "LOGAH": "logah", "PY": "python", **given}
    for recipe in targets[names[0]]:
        expanded = re.sub(r"\$\((\w+)\)", lambda m: values.get(m.group(1), m.group(0)), recipe)
        tokens = [t for t in shlex.split(expanded) if not re.match(r"^[A-Z_]+=", t)]
        if tokens and tokens[0] in ("logah", "python"):
            check_tokens(tokens)  # the command the target runs, with ARGS (and task) in place


# ---- logah -------------------------------------------------------------------------------------
def check_logah(tokens: list[str]) -> None:
    argv = [t for t in tokens[1:] if t != "..."]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = build_parser().parse_args(argv)
    except SystemExit:
        raise DocLineError(err.getvalue().strip().splitlines()[-1]) from None
    if getattr(args, "overrides", None) is None:
        return
    schema, prefix = SCHEMAS[args.command]
    overrides = [o if not prefix or o.startswith(prefix) else prefix + o for o in args.overrides]
    # model.arch may name the user's own HF config.json / model dir, which no repository holds:
    # check the other keys with a preset in its place.
    overrides = ["model.arch=gpt2-tiny" if re.match(r"model\.arch=.*(/|\.json$)", o)
                 else o for o in overrides]
    config = args.config if args.config and (REPO / args.config).is_file() else None
    if args.config and config is None:
        raise DocLineError(f"--config {args.config}: no such file in the repository")
    try:
        load_config(schema, REPO / config if config else None, overrides)
    except ConfigError as e:
        raise DocLineError(f"logah {args.command}: {e}") from None


# ---- python scripts ----------------------------------------------------------------------------
@cache
def script_help(script: str) -> str:
    proc = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    return proc.stdout


def check_python(tokens: list[str]) -> None:
    if tokens[1] == "-c":
        compile(tokens[2], "<doc line>", "exec")  # a SyntaxError fails the test
        return
    if tokens[1] == "-m":  # an installed module (pytest): its options are its own
        return
    script = tokens[1]
    if not (REPO / script).is_file():
        raise DocLineError(f"python {script}: no such script in the repository")
    known = set(re.findall(r"(--[\w-]+)", script_help(script)))
    for flag in (t.split("=", 1)[0] for t in tokens[2:] if t.startswith("--") and t != "--"):
        if flag not in known:
            raise DocLineError(f"python {script}: unknown option {flag}")


# ---- one line, one block -----------------------------------------------------------------------
def check_tokens(tokens: list[str]) -> None:
    if tokens[0] in ("srun", "torchrun"):  # a launcher: check the command it starts
        tokens = tokens[next(i for i, t in enumerate(tokens) if t == "logah"):]
    head = tokens[0]
    if head == "make":
        check_make(tokens)
    elif head == "logah":
        check_logah(tokens)
    elif head == "python":
        check_python(tokens)
    elif head == "pip" and tokens[1:2] == ["install"]:
        return
    elif " ".join(tokens) != ACTIVATE:
        raise DocLineError(f"{head}: not a command of this project (make, logah, python, pip)")


def check_line(line: str) -> None:
    """Raise :class:`DocLineError` if ``line`` would not run as typed."""
    line = line.replace("$(which logah)", "logah")
    # usage notation: [--out DIR] -> --out DIR; [--x step|flops] -> --x step
    # (a value such as grow.schedule=[{...}] is not usage notation)
    line = re.sub(r"(?<!=)\[([^\[\]{}]*)\]", lambda m: re.sub(r"\|\S+", "", m.group(1)), line)
    check_tokens(shlex.split(line, comments=True))


def check_block(lines: list[str]) -> None:
    """Each line, and ``logah``/``python``/``pip`` only after ``source .venv/bin/activate``."""
    active = False
    for line in lines:
        first = shlex.split(line, comments=True)[0]
        if line.startswith(ACTIVATE):
            active = True
        elif first in NEEDS_VENV or first in ("srun", "torchrun"):
            if not active:
                raise DocLineError(f"{line!r}: {first} is not on PATH in a fresh shell; start "
                                   f"the block with `{ACTIVATE}`")
        check_line(line)


CASES = [(p, i, b) for p in DOCS for i, b in enumerate(bash_blocks(p))]


@pytest.mark.parametrize("path,index,block", CASES,
                         ids=[f"{p.relative_to(REPO)}#{i}" for p, i, _ in CASES])
def test_documented_commands_run_as_typed(path, index, block):
    check_block(block)


def test_the_scan_finds_the_readme_commands():
    lines = [ln for p, _, b in CASES if p.name == "README.md" for ln in b]
    assert "make train-ghn" in " ".join(lines) and any(ln.startswith("logah predict") for ln in lines)


def test_every_config_command_has_a_schema():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    with_overrides = {name for name, p in sub.choices.items()
                      if any(a.dest == "overrides" for a in p._actions)}
    assert with_overrides == set(SCHEMAS)


@pytest.mark.parametrize("block,why", [
    (["make finetun"], "unknown target finetun"),
    (["make finetune TASK=vit"], "TASK= is not a Makefile variable"),
    (['make finetune ARGS="trainer.max_stpes=5"'], "trainer.max_stpes: unknown key"),
    (["make train-ghn task=nope"], "conf/train_ghn/nope.yaml: no such file"),
    ([ACTIVATE, "logah predcit --ghn x --arch gpt2-tiny --out o"], "invalid choice: 'predcit'"),
    ([ACTIVATE, "logah grow --from w --to gpt2-mini --out o --sed 3"], "unrecognized arguments: --sed"),
    ([ACTIVATE, "logah finetune data.nme=brown"], "data.nme: unknown key"),
    ([ACTIVATE, "logah train-ghn task=vit"], "task: unknown key"),
    ([ACTIVATE, "logah predict --ghn g --arch gpt2-tiny --out o model.d_modl=8"],
     "model.d_modl: unknown key"),
    ([ACTIVATE, "python experiments/run.py conf/experiment/cpu-brown --no-such-flag"],
     "unknown option --no-such-flag"),
    ([ACTIVATE, "python experiments/nope.py"], "no such script"),
    (["logah models"], "logah is not on PATH in a fresh shell"),
    ([ACTIVATE, "tensorboard --logdir runs"], "not a command of this project"),
])
def test_a_bad_line_fails(block, why):
    with pytest.raises(DocLineError, match=re.escape(why)):
        check_block(block)
