"""The writes send every column but ts as one array literal (db._columns): whatever the text, the
array PostgreSQL reads holds the same elements, in the same order."""

from __future__ import annotations

import json

from dw_ingest.db import _text_array

# Symbols never hold most of these (the model's pattern refuses them); the literal must not rely on it.
TEXTS = ["AAPL", "BRK.B", "NULL", "null", "", 'a"b', "a\\b", '\\"', "a,b", "{x}", " padded ", "\t"]


def test_a_text_array_literal_holds_each_text_as_sent(cluster):
    literal = _text_array(TEXTS)
    stored = cluster.psql(f"SELECT array_to_json($literal${literal}$literal$::text[])")
    assert json.loads(stored) == TEXTS


def test_a_single_text(cluster):
    stored = cluster.psql(f"SELECT array_to_json($literal${_text_array(['NULL'])}$literal$::text[])")
    assert json.loads(stored) == ["NULL"]
