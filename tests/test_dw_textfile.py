"""dw_textfile (templates/dw_textfile.py), the textfile helpers of dw-backup-metrics,
dw-certificate-metrics and dw-backup-verify: numbers with every digit, label values escaped as the
exposition format wants, the file's text, and a write the node exporter never sees half of."""

from __future__ import annotations

import os
from pathlib import Path

import dw_textfile
import pytest


@pytest.mark.parametrize(
    ("value", "decimals", "text"),
    [
        (0, None, "0"),
        (7, None, "7"),
        (1795818662.0, None, "1795818662"),  # a whole float: no ".0"
        (1500000000.0, None, "1500000000"),  # not 1.5e+09
        (1795818662.1234567, None, "1795818662.1234567"),  # every digit, not %g's 1.79582e+09
        (199.75, None, "199.75"),
        (-2.5, None, "-2.5"),
        (0.1, 3, "0.100"),  # dw-backup-verify's durations: three decimals
        (12.3456, 3, "12.346"),
        (12.0, 3, "12"),
    ],
)
def test_number_text(value: float, decimals: int | None, text: str) -> None:
    assert dw_textfile.number_text(value, decimals) == text


def test_label_text_escapes_backslash_quote_and_newline_in_order() -> None:
    labels = {"path": "/etc/a b.crt", "subject": 'CN=quo"te\\back\nline', "repo": 2}
    assert dw_textfile.label_text(labels) == r'{path="/etc/a b.crt",subject="CN=quo\"te\\back\nline",repo="2"}'


def test_label_text_of_no_labels_is_empty() -> None:
    assert dw_textfile.label_text({}) == ""


def test_render_follows_the_help_texts_and_leaves_out_the_rest() -> None:
    help_texts = {"b_total": "B's help", "a_seconds": "A's help", "unused": "no samples, no lines"}
    samples: list[dw_textfile.Sample] = [
        ("a_seconds", {"x": "1"}, 1.5),
        ("b_total", {}, 3),
        ("unnamed", {"x": "1"}, 9),  # no help text: left out
        ("a_seconds", {"x": "2"}, 2),
    ]
    assert dw_textfile.render(help_texts, samples) == (
        "# HELP b_total B's help\n"
        "# TYPE b_total gauge\n"
        "b_total 3\n"
        "# HELP a_seconds A's help\n"
        "# TYPE a_seconds gauge\n"
        'a_seconds{x="1"} 1.5\n'
        'a_seconds{x="2"} 2\n'
    )
    assert dw_textfile.render(help_texts, [("a_seconds", {}, 0.25)], decimals=3).endswith("a_seconds 0.250\n")
    assert dw_textfile.render(help_texts, []) == "\n"


def test_write_atomically_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "dw_example.prom"
    target.write_text("old\n")
    inode = target.stat().st_ino
    dw_textfile.write_atomically(target, "new\n", prefix=".dw_example.")
    assert target.read_text() == "new\n"
    assert target.stat().st_ino != inode  # renamed over the old file, not rewritten in place
    assert oct(target.stat().st_mode & 0o777) == "0o644"  # whatever the umask: the exporter reads it
    assert [p.name for p in tmp_path.iterdir()] == ["dw_example.prom"]  # no temporary left
    dw_textfile.write_atomically(str(tmp_path / "other.prom"), "text\n")  # a str path too
    assert (tmp_path / "other.prom").read_text() == "text\n"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "dw_example.prom"
    target.write_text("old\n")
    seen: list[str] = []

    def fail(tmp: str, path: object) -> None:
        seen.append(os.path.basename(tmp))
        raise OSError("rename refused")

    monkeypatch.setattr(dw_textfile.os, "replace", fail)
    with pytest.raises(OSError, match="rename refused"):
        dw_textfile.write_atomically(target, "new\n", prefix=".dw_example.")
    assert seen[0].startswith(".dw_example.")  # written next to the target, under the prefix given
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["dw_example.prom"]
