"""The README's examples, run, so that they cannot drift from the package (issue 14).

Every fenced block of README.md is one test, in the README's order:

* a ``python`` block runs in a fresh namespace, in a fresh folder;
* a ``console`` block's ``$ bimix ...`` commands run through the CLI's entry point
  (:func:`bimix_bayes.cli.app.main`) in one folder shared by the whole file, so that the
  ``fit122m.nc`` one block makes is what the next ones read; ``$ cat NAME`` and the lines under
  it is a file the README shows, written there before anything runs. What the README shows under
  a command must be what the command prints, numbers aside (numbers, versions and hashes are
  masked; ``...`` stands for any text; a ``diagnostics`` line depends on the draws): a table row
  the command cannot print, or domains in another order, fail the test;
* a ``bash`` block's lines are commands, as in a console block.

Both kinds see the public datasets as ``../shared/datasets`` (a link to them) and skip when they
are absent. Bayesian fits run with 2 chains x 1000 draws (``--chains 2 --draws 1000 --tune 500
--no-retry`` added to ``bimix fit``), and the blocks that fit or read a fit are marked slow.
``bimix demo``, ``corpora``, ``study``, ``train`` and ``verify`` are left to their own tests
(torch, package registries, minutes). Any other command in a block is an error, unless the
block is tagged by an HTML comment on the line right before it:

* ``<!-- readme-test: skip (reason) -->``: the block is not run;
* ``<!-- readme-test: file NAME -->``: the block is a file the examples read, written as NAME.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bimix_bayes.bayes.correlated_posterior import resolve_run_correlation
from bimix_bayes.bayes.spec import load_spec, resolve_alpha_drift, spec_id
from bimix_bayes.cli.app import main
from bimix_bayes.data.public_loaders import find_datasets

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text(encoding="utf-8")
SHARED = "../shared/datasets"
TAG = re.compile(r"<!--\s*readme-test:\s*(?P<kind>\w+)\s*(?P<arg>.*?)\s*-->")

#: Commands the README shows but this file does not run, and why.
UNRUN = {
    "demo": "the demo takes minutes (tests/test_cli.py runs it, marked slow)",
    "corpora": "needs package registries (tests/test_proxy_corpora.py)",
    "study": "trains with torch for hours (tests/test_proxy_study.py)",
    "train": "trains with torch (tests/test_proxy_trainer.py)",
    "verify": "trains with torch (tests/test_proxy_verify.py)",
}
#: Commands that fit or read a Bayesian fit: their blocks are slow.
BAYESIAN = {
    "fit",
    "summary",
    "predict",
    "optimize",
    "rank",
    "report",
    "compare",
    "backtest",
    "next",
}
#: What ``bimix fit`` gets beside the README's options: a quick fit. 1000 draws per chain: with
#: 2 x 300 the CVaR example's solver ends at a kink of the 60-draw tail (KKT residual 1.9e-3 >
#: its 1e-3 tolerance, reported as NOT converged); with 2 x 1000 it converges as with 4 x 1000.
#: A warm-up of 500 (the default is 300): with 2 chains and 300 the fit of every SlimPajama size
#: under the falling noise ends at r-hat 1.011 (size_beta[c4]); with 500 it passes (1.007). The
#: default 4 chains pass at 300 (reports/validation.md, the size fit: r-hat 1.005).
QUICK_FIT = ["--chains", "2", "--draws", "1000", "--tune", "500", "--no-retry"]

# Numbers (1.9998e+10, 90%, versions 5.28.5) and hashes (8de9525c46e2, spec ids) are masked.
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d[\d.]*|\.\d+)(?:e[-+]?\d+)?%?")
HEX = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{12,}\b")


@dataclass(frozen=True)
class Command:
    """One ``$ ...`` line of a block (continuations joined) and the output shown under it."""

    argv: list[str]
    line: int
    shown: list[str] = field(default_factory=list)

    @property
    def subcommand(self) -> str | None:
        """``fit`` for ``bimix --quiet fit DATA``; None for another program."""
        if self.argv[:1] != ["bimix"]:
            return None
        return next((a for a in self.argv[1:] if not a.startswith("-")), None)


@dataclass(frozen=True)
class Block:
    """A fenced block: its language, text, the README line of its fence, and its tag."""

    lang: str
    text: str
    line: int
    tag: str | None = None
    arg: str = ""

    @property
    def commands(self) -> list[Command]:
        """The commands of a console (``$ ...``) or bash (every line) block."""
        lines = self.text.splitlines()
        if self.lang == "bash":
            lines = [f"$ {x}" for x in lines if x.strip() and not x.lstrip().startswith("#")]
        found: list[Command] = []
        k = 0
        while k < len(lines):
            if not lines[k].startswith("$ "):
                k += 1
                continue
            start, text = k, lines[k][2:]
            while text.endswith("\\") and k + 1 < len(lines):
                k += 1
                text = text[:-1] + " " + lines[k].strip()
            shown = []
            k += 1
            while k < len(lines) and not lines[k].startswith("$ "):
                shown.append(lines[k])
                k += 1
            found.append(Command(shlex.split(text, comments=True), self.line + 1 + start, shown))
        return found

    @property
    def needs_shared(self) -> bool:
        return SHARED in self.text

    @property
    def slow(self) -> bool:
        if self.lang == "python":
            return "BiMixModel(" in self.text or "backtest(" in self.text
        return any(c.subcommand in BAYESIAN for c in self.commands)

    @property
    def runs(self) -> bool:
        """Whether a test runs the block (a python, bash or console block not tagged)."""
        return self.tag is None and self.lang in ("python", "bash", "console")


def readme_blocks(text: str = TEXT) -> list[Block]:
    """The fenced blocks of ``text`` with the tag on the line before each."""
    lines, blocks, k = text.splitlines(), [], 0
    while k < len(lines):
        if not lines[k].startswith("```"):
            k += 1
            continue
        end = next(j for j in range(k + 1, len(lines)) if lines[j].strip() == "```")
        tag = TAG.fullmatch(lines[k - 1].strip()) if k else None
        blocks.append(
            Block(
                lang=lines[k][3:].strip(),
                text="\n".join(lines[k + 1 : end]) + "\n",
                line=k + 1,
                tag=tag["kind"] if tag else None,
                arg=tag["arg"] if tag else "",
            )
        )
        k = end + 1
    return blocks


BLOCKS = readme_blocks()


def _params(lang: tuple[str, ...]) -> list:
    marks = {True: [pytest.mark.slow], False: []}
    return [
        pytest.param(b, id=f"{b.lang}-line{b.line}", marks=marks[b.slow])
        for b in BLOCKS
        if b.lang in lang
    ]


def _folder(root: Path) -> Path:
    """``root/work``, beside ``root/shared/datasets`` (a link to the datasets, when present)."""
    datasets = find_datasets()
    if datasets is not None:
        (root / "shared").mkdir(exist_ok=True)
        link = root / "shared" / "datasets"
        if not link.exists():
            link.symlink_to(datasets.resolve(), target_is_directory=True)
    work = root / "work"
    work.mkdir(exist_ok=True)
    return work


def _skip_without_datasets(block: Block) -> None:
    if block.needs_shared and find_datasets() is None:
        pytest.skip(f"needs {SHARED} (set BIMIX_SHARED_DATASETS or use ../shared/datasets)")


@dataclass
class Workdir:
    """The folder the console blocks share, and the output of each command already run there."""

    path: Path
    done: dict[tuple[str, ...], str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Workdir:
    """The shared folder, holding every file the README shows (tagged blocks, ``$ cat NAME``)."""
    work = _folder(tmp_path_factory.mktemp("readme"))
    for block in BLOCKS:
        if block.tag == "file":
            (work / block.arg).write_text(block.text)
        elif block.runs:
            for cmd in block.commands:
                if cmd.argv[0] == "cat" and len(cmd.argv) == 2:
                    (work / cmd.argv[1]).write_text("\n".join(cmd.shown) + "\n")
    return Workdir(work)


def _shape(line: str) -> str:
    """A line with its numbers and hashes masked and its spaces collapsed."""
    return " ".join(NUMBER.sub("#", HEX.sub("#", line)).split())


def _matches(want: str, got: str) -> bool:
    if want.startswith("diagnostics "):  # PASSED or FAILED, and where, depend on the draws
        return got.startswith("diagnostics ")
    if "..." not in want:
        return want == got
    pos = 0
    for part in (p.strip() for p in want.split("...")):
        pos = got.find(part, pos)
        if pos < 0:
            return False
        pos += len(part)
    return True


def check_output(cmd: Command, printed: str) -> None:
    """Every line the README shows under ``cmd`` is a line it printed, in the same order."""
    got = [_shape(x) for x in printed.splitlines()]
    pos = 0
    for offset, raw in enumerate(cmd.shown, start=1):
        want = _shape(raw)
        if want in ("", "..."):
            continue
        hit = next((i for i in range(pos, len(got)) if _matches(want, got[i])), None)
        if hit is None:
            pytest.fail(
                f"README.md line {cmd.line + offset} is not what `{shlex.join(cmd.argv)}` prints "
                f"(numbers aside), after its line {pos}:\n  README: {raw}\n--- it printed:\n"
                f"{printed}"
            )
        pos = hit + 1


def run_bimix(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``bimix ARGS`` in-process in ``cwd``: the exit code and what it printed (stdout and
    stderr interleaved)."""
    out = io.StringIO()
    with (
        contextlib.chdir(cwd),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(out),
        warnings.catch_warnings(),
    ):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue()


def _missing_fit(cmd: Command, cwd: Path) -> str | None:
    """A fit file ``cmd`` reads that an earlier example should have made, if it is missing."""
    reads = [a for i, a in enumerate(cmd.argv) if i == 0 or cmd.argv[i - 1] != "--out"]
    return next((a for a in reads if a.endswith(".nc") and not (cwd / a).exists()), None)


# ------------------------------------------------------------------------------ the tests
def test_every_block_is_run_or_tagged():
    """A new example cannot go untested: each block runs, or its tag says why not."""
    assert len(BLOCKS) > 10
    problems = []
    for b in BLOCKS:
        if b.tag not in (None, "skip", "file"):
            problems.append(f"line {b.line}: unknown tag {b.tag!r} (skip or file)")
        elif b.tag == "skip" and not re.fullmatch(r"\(.+\)", b.arg):
            problems.append(f"line {b.line}: a skip tag says why: <!-- readme-test: skip (why) -->")
        elif b.tag == "file" and not re.fullmatch(r"[\w.-]+", b.arg):
            problems.append(f"line {b.line}: a file tag names the file: {b.arg!r}")
        elif b.runs and b.lang != "python":
            other = [c for c in b.commands if c.argv[0] not in ("bimix", "cat")]
            problems += [f"line {c.line}: `{shlex.join(c.argv)}` is not run: tag it" for c in other]
            if not b.commands:
                problems.append(f"line {b.line}: a {b.lang} block with no `$ ` command")
    assert not problems, "\n".join(problems)
    assert sum(b.runs for b in BLOCKS) >= 10


def test_spec_ids_shown_are_the_default_spec():
    """`bimix summary` of a fit with the default spec shows the id of the default spec as a fit
    of training-domain data of one model size saves it ("auto" settings decided)."""
    ids = re.findall(r"spec id ([0-9a-f]{16})", TEXT)
    assert ids, "the README shows no spec id: drop this test"
    saved = resolve_alpha_drift(
        resolve_run_correlation(load_spec(), evaluation_only=False), has_sizes=False
    )
    assert set(ids) == {spec_id(saved)}


@pytest.mark.parametrize("block", _params(("console", "bash")))
def test_console_block(block: Block, workdir: Workdir):
    if block.tag == "skip":
        pytest.skip(f"tagged in the README: {block.arg}")
    if block.tag == "file":
        pytest.skip(f"written as {block.arg} for the other examples")
    _skip_without_datasets(block)
    ran = 0
    for cmd in block.commands:
        if cmd.argv[0] == "cat":
            continue  # written by the fixture
        if cmd.subcommand in UNRUN:
            continue
        if (missing := _missing_fit(cmd, workdir.path)) is not None:
            pytest.skip(f"needs {missing}, made by an earlier example (run the whole file)")
        argv = cmd.argv[1:] + (QUICK_FIT if cmd.subcommand == "fit" else [])
        key = tuple(argv)
        if key not in workdir.done:
            code, printed = run_bimix(argv, workdir.path)
            assert code == 0, f"README.md line {cmd.line}: exit {code}\n{printed}"
            workdir.done[key] = printed
        check_output(cmd, workdir.done[key])
        ran += 1
    if not ran:
        reasons = {UNRUN[c.subcommand] for c in block.commands if c.subcommand in UNRUN}
        pytest.skip("; ".join(sorted(reasons)) or "nothing to run")


@pytest.mark.parametrize("block", _params(("python",)))
def test_python_block(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if block.tag == "skip":
        pytest.skip(f"tagged in the README: {block.arg}")
    _skip_without_datasets(block)
    monkeypatch.chdir(_folder(tmp_path))
    code = compile(block.text, f"README.md (block at line {block.line})", "exec")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the quick fit fails its ESS checks, and says so
        exec(code, {"__name__": "__readme__"})


# ------------------------------------------------------------------------------ the checker
def test_the_output_check_catches_a_row_the_command_cannot_print():
    """The check that caught the README's `recommended` row and its alphabetical domains."""
    printed = "rank mixture objective\n    1 uniform 2.41\n    2 code-heavy 2.42\n"
    shown = [" rank mixture objective", "1 recommended 2.40", "2 uniform 2.41"]
    with pytest.raises(pytest.fail.Exception, match="recommended"):
        check_output(Command(["bimix", "rank"], 1, shown), printed)
    check_output(Command(["bimix", "rank"], 1, [shown[0], "1 uniform 2.5", "..."]), printed)
    with pytest.raises(pytest.fail.Exception, match="uniform"):  # order counts
        check_output(Command(["bimix", "rank"], 1, ["2 code-heavy 2", "1 uniform 2"]), printed)


def test_blocks_and_commands_are_read_as_shown():
    text = (
        "<!-- readme-test: skip (no) -->\n```console\n$ bimix fit a.csv \\\n    --out f.nc  # x\n"
        "out 1\n$ cat m.csv\nname,a\n```\n\n```python\nx = 1\n```\n"
    )
    console, python = readme_blocks(text)
    assert (console.tag, console.arg, python.tag, python.line) == ("skip", "(no)", None, 10)
    fit, cat = console.commands
    assert fit.argv == ["bimix", "fit", "a.csv", "--out", "f.nc"] and fit.subcommand == "fit"
    assert (fit.line, fit.shown, cat.shown) == (3, ["out 1"], ["name,a"])
    assert _shape("sha256 8de9525c46e2..., 4158 obs, 1.9998e+10, c4 90% pymc 5.28.5") == (
        "sha256 #..., # obs, #, c4 # pymc #"
    )
