"""Prometheus textfile metrics for the node exporter's textfile collector, written in one way.

The helpers dw-backup-metrics, dw-certificate-metrics (node_exporter role), dw-backup-verify and
dw-restore-drill (pgbackrest role) share: writing a file, and reading back what a former run
wrote. Both roles install this file, from templates/dw_textfile.py, as
/usr/local/lib/dw-metrics/dw_textfile.py, the directory each script puts first on sys.path.

A sample is (metric name, labels, value); render() writes every metric a help text names that has
samples, in the order of the help texts, each with its HELP and TYPE (gauge) lines.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping

Sample = tuple[str, Mapping[str, object], float]

_SAMPLE_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def number_text(value: float, decimals: int | None = None) -> str:
    """Every digit: a timestamp in %g would lose its seconds. A whole number is written without a
    fraction; any other with repr()'s shortest exact digits, or with `decimals` fixed digits."""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value)) if decimals is None else f"{value:.{decimals}f}"


def label_text(labels: Mapping[str, object]) -> str:
    """{key="value",...} in the labels' order, values escaped as the exposition format wants
    (backslash, double quote, newline); no labels, no braces."""
    if not labels:
        return ""
    parts = []
    for key, value in labels.items():
        text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{key}="{text}"')
    return "{" + ",".join(parts) + "}"


def read_samples(path: str | os.PathLike[str]) -> list[Sample]:
    """The samples a former run wrote to path, labels unescaped (none when there is no file); a
    line that is not a sample with a number is skipped: the file is a script's own record."""
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    samples: list[Sample] = []
    for line in lines:
        match = _SAMPLE_LINE.match(line)
        if not match:
            continue
        try:
            value = float(match["value"])
        except ValueError:
            continue
        labels = {
            label["key"]: re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], label["value"])
            for label in _LABEL.finditer(match["labels"] or "")
        }
        samples.append((match["name"], labels, value))
    return samples


def render(help_texts: Mapping[str, str], samples: Iterable[Sample], decimals: int | None = None) -> str:
    """The file's text: per metric named in help_texts that has samples, its HELP and TYPE lines
    and its samples in the order given. Samples of a metric help_texts does not name are left out."""
    found = list(samples)
    lines: list[str] = []
    for name, help_text in help_texts.items():
        mine = [sample for sample in found if sample[0] == name]
        if not mine:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{label_text(labels)} {number_text(value, decimals)}" for _, labels, value in mine]
    return "\n".join(lines) + "\n"


def write_atomically(path: str | os.PathLike[str], text: str, prefix: str = ".dw_textfile.") -> None:
    """Write text to a temporary file (mode 0644, its name starting with prefix) next to path and
    rename it over path: the node exporter reads the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.fspath(path)), prefix=prefix)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
