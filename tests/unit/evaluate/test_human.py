import csv
import json
import math
import statistics

import pytest

from instructkit.errors import DataFormatError
from instructkit.evaluate.human import (
    Rating,
    export_sheet,
    import_sheets,
    parse_sheet_cell,
    summarize_ratings,
)
from instructkit.evaluate.stats import compare_paired, krippendorff_alpha

# System names that appear in no prompt or response, so a leak into the sheet is detectable.
BASE, CAND = "baseline7", "candidate9"
CRIT = ("helpfulness", "accuracy")
RATERS = ("ann", "bob", "cy")

# Un-blinded scores: criterion -> (item, system) -> one score per rater in RATERS (None: empty).
SCORES = {
    "helpfulness": {
        ("q1", BASE): (2, 3, 2),
        ("q1", CAND): (4, 4, 5),
        ("q2", BASE): (3, None, 3),
        ("q2", CAND): (5, 4, 4),
        ("q3", BASE): (1, 2, 1),
        ("q3", CAND): (3, 3, None),
    },
    "accuracy": {
        ("q1", BASE): (3, 3, 3),
        ("q1", CAND): (4, 4, 4),
        ("q2", BASE): (2, 2, None),
        ("q2", CAND): (5, 5, 5),
        ("q3", BASE): (3, 3, 3),
        ("q3", CAND): (4, 4, 4),
    },
}

TRICKY = [
    'Say "hi", then stop.',
    "Line one\nline two\r\nline three",
    "Ünïcödé — 日本語 — emoji 🙂, and a tab\there",
    "=SUM(A1:A2) starts like a formula",
    "- a bullet, then a trailing newline\n",
    "",
]


def _items(n):
    return [{"id": f"q{i}", "prompt": f"prompt {i}?"} for i in range(1, n + 1)]


def _export(tmp_path, n=3, *, seed=0, criteria=CRIT, jsonl=True):
    items = _items(n)
    systems = {
        BASE: [f"plain answer {i}" for i in range(1, n + 1)],
        CAND: [f"better answer {i}" for i in range(1, n + 1)],
    }
    out_jsonl = tmp_path / "sheet.jsonl" if jsonl else None
    key = export_sheet(
        items, systems, tmp_path / "sheet.csv", out_jsonl, seed=seed, criteria=criteria
    )
    return key


def _read_csv(path):
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def _write_csv(path, rows, delimiter=",", encoding="utf-8"):
    with open(path, "w", encoding=encoding, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _key_items(key_path):
    return json.loads(key_path.read_text(encoding="utf-8"))["items"]


def _fill(rows, key_path, rater_index):
    """The sheet as rater RATERS[rater_index] filled it: SCORES put back in blinded positions."""
    positions = _key_items(key_path)
    filled = []
    for row in rows:
        row = dict(row)
        for position, system in positions[row["item_id"]].items():
            for crit in CRIT:
                score = SCORES[crit][(row["item_id"], system)][rater_index]
                row[f"response_{position}_{crit}"] = "" if score is None else str(score)
        filled.append(row)
    return filled


def _three_sheets(tmp_path):
    """ann.csv (rater = stem), bob.jsonl (JSON numbers) and sheet3.csv with a rater column."""
    key = _export(tmp_path)
    rows = _read_csv(tmp_path / "sheet.csv")
    ann = _write_csv(tmp_path / "ann.csv", _fill(rows, key, 0))
    bob = tmp_path / "bob.jsonl"
    bob_rows = [
        {k: (int(v) if v.isdigit() else None) if k.count("_") == 2 else v for k, v in r.items()}
        for r in _fill(rows, key, 1)
    ]
    bob.write_text("".join(json.dumps(r) + "\n" for r in bob_rows), encoding="utf-8")
    cy = _write_csv(tmp_path / "sheet3.csv", [{**r, "rater": "cy"} for r in _fill(rows, key, 2)])
    return key, [ann, bob, cy]


# --- export ---------------------------------------------------------------------------------


def test_export_writes_sheet_mirror_and_separate_key(tmp_path):
    key = _export(tmp_path)
    assert key == tmp_path / "sheet.key.json"
    with open(tmp_path / "sheet.csv", encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f))
    assert header == [
        "item_id",
        "prompt",
        "response_1",
        "response_1_helpfulness",
        "response_1_accuracy",
        "response_2",
        "response_2_helpfulness",
        "response_2_accuracy",
        "comment",
    ]
    rows = _read_csv(tmp_path / "sheet.csv")
    assert [r["item_id"] for r in rows] == ["q1", "q2", "q3"]
    assert all(r[c] == "" for r in rows for c in header if c.count("_") == 2 or c == "comment")
    mirror = [json.loads(line) for line in (tmp_path / "sheet.jsonl").read_text().splitlines()]
    assert [list(m) for m in mirror] == [header] * 3
    assert all(m["response_1_accuracy"] is None and m["comment"] == "" for m in mirror)


def test_sheet_names_no_system_anywhere(tmp_path):
    key = _export(tmp_path)
    for name in ("sheet.csv", "sheet.jsonl"):
        text = (tmp_path / name).read_text(encoding="utf-8-sig")
        assert BASE not in text and CAND not in text
    assert BASE in key.read_text() and CAND in key.read_text()


def test_key_maps_positions_back_to_the_systems(tmp_path):
    key = _export(tmp_path, n=10)
    positions = _key_items(key)
    for row in _read_csv(tmp_path / "sheet.csv"):
        i = row["item_id"][1:]
        expected = {BASE: f"plain answer {i}", CAND: f"better answer {i}"}
        assert {row[f"response_{k}"] for k in ("1", "2")} == set(expected.values())
        for k, system in positions[row["item_id"]].items():
            assert row[f"response_{k}"] == expected[system]


def test_blinding_is_random_across_items_and_deterministic_by_seed(tmp_path):
    first = _key_items(_export(tmp_path / "a", n=20, seed=0))
    again = _key_items(_export(tmp_path / "b", n=20, seed=0))
    other = _key_items(_export(tmp_path / "c", n=20, seed=1))
    assert first == again
    assert (tmp_path / "a/sheet.csv").read_bytes() == (tmp_path / "b/sheet.csv").read_bytes()
    assert other != first
    shown_first = [order["1"] for order in first.values()]
    assert set(shown_first) == {BASE, CAND}  # both orders occur


def test_order_of_an_item_does_not_depend_on_the_other_items(tmp_path):
    whole = _key_items(_export(tmp_path / "a", n=8))
    items = _items(8)[4:]
    systems = {BASE: ["x"] * 4, CAND: ["y"] * 4}
    part = _key_items(export_sheet(items, systems, tmp_path / "b" / "s.csv"))
    assert part == {k: whole[k] for k in ("q5", "q6", "q7", "q8")}


def test_three_systems_each_item_shows_a_permutation(tmp_path):
    systems = {"s_a": ["a"] * 6, "s_b": ["b"] * 6, "s_c": ["c"] * 6}
    positions = _key_items(export_sheet(_items(6), systems, tmp_path / "s.csv"))
    for order in positions.values():
        assert sorted(order) == ["1", "2", "3"] and sorted(order.values()) == sorted(systems)
    assert len({tuple(o.values()) for o in positions.values()}) > 1


def test_csv_round_trips_commas_quotes_newlines_and_unicode(tmp_path):
    items = [{"id": f"t{i}", "prompt": text} for i, text in enumerate(TRICKY)]
    systems = {BASE: TRICKY[::-1], CAND: [t.upper() for t in TRICKY]}
    key = export_sheet(items, systems, tmp_path / "s.csv", tmp_path / "s.jsonl")
    raw = (tmp_path / "s.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads UTF-8
    rows = _read_csv(tmp_path / "s.csv")
    positions = _key_items(key)
    for i, row in enumerate(rows):
        assert row["prompt"] == TRICKY[i]
        for k, system in positions[row["item_id"]].items():
            assert row[f"response_{k}"] == systems[system][i]
    mirror = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [{k: "" if v is None else v for k, v in m.items()} for m in mirror] == rows


@pytest.mark.parametrize(
    ("items", "systems", "match"),
    [
        ([{"id": "a", "prompt": "p"}, {"id": "a", "prompt": "q"}], {"s": ["x", "y"]}, "repeats"),
        ([{"id": "a"}], {"s": ["x"]}, "'prompt'"),
        ([{"id": " a", "prompt": "p"}], {"s": ["x"]}, "not a usable id"),
        ([{"id": "a", "prompt": "p"}], {"s": ["x", "y"]}, "2 responses for 1 items"),
        ([{"id": "a", "prompt": "p"}], {"s": [None]}, "not text"),
        ([{"id": "a", "prompt": "p"}], {}, "no systems"),
        ([], {"s": []}, "no items"),
    ],
)
def test_export_rejects_bad_inputs(tmp_path, items, systems, match):
    with pytest.raises(DataFormatError, match=match):
        export_sheet(items, systems, tmp_path / "s.csv")


def test_export_rejects_bad_criteria(tmp_path):
    with pytest.raises(ValueError, match="criteria"):
        export_sheet(_items(1), {"s": ["x"]}, tmp_path / "s.csv", criteria=("Helpful ness",))


def test_export_keeps_a_different_key_unless_told(tmp_path):
    _export(tmp_path, seed=0)
    _export(tmp_path, seed=0)  # same key again: fine
    with pytest.raises(DataFormatError, match="different un-blinding key") as err:
        _export(tmp_path, seed=1)
    assert err.value.path == tmp_path / "sheet.key.json"
    items, systems = _items(1), {"s": ["x"]}
    export_sheet(items, systems, tmp_path / "sheet.csv", overwrite_key=True)
    assert list(_key_items(tmp_path / "sheet.key.json")) == ["q1"]


# --- import and aggregates ------------------------------------------------------------------


def _expected_scores(crit, system):
    return [s for (_, sys), by_rater in SCORES[crit].items() if sys == system for s in by_rater]


def test_import_three_sheets_means_std_and_missing(tmp_path):
    key, paths = _three_sheets(tmp_path)
    result = import_sheets(paths, key)
    assert result.raters == RATERS
    assert result.systems == (BASE, CAND)
    assert result.criteria == CRIT
    assert result.n_cells == 3 * 3 * 2 * 2
    assert result.n_missing == 3
    assert result.missing_by_rater == {"ann": 0, "bob": 1, "cy": 2}
    # helpfulness of the baseline: 2 3 2 | 3 3 | 1 2 1 -> 17 / 8
    hb = result.scores[BASE]["helpfulness"]
    assert hb.n == 8 and hb.mean == pytest.approx(17 / 8)
    assert hb.std == pytest.approx(math.sqrt((41 - 8 * (17 / 8) ** 2) / 7))
    for crit in CRIT:
        for system in (BASE, CAND):
            values = [s for s in _expected_scores(crit, system) if s is not None]
            stats = result.scores[system][crit]
            assert stats.n == len(values)
            assert stats.mean == pytest.approx(statistics.mean(values))
            assert stats.std == pytest.approx(statistics.stdev(values))


def test_import_per_item_means_and_paired_comparison(tmp_path):
    key, paths = _three_sheets(tmp_path)
    result = import_sheets(paths, key)
    means = result.item_means["helpfulness"]
    assert means[BASE] == pytest.approx({"q1": 7 / 3, "q2": 3.0, "q3": 4 / 3})
    assert means[CAND] == pytest.approx({"q1": 13 / 3, "q2": 13 / 3, "q3": 3.0})
    cmp = {c.criterion: c for c in result.comparisons}
    help_cmp = cmp["helpfulness"]
    assert (help_cmp.system_a, help_cmp.system_b) == (BASE, CAND)
    assert help_cmp.result.n == 3 and help_cmp.result.wins == 3
    assert help_cmp.result.diff == pytest.approx(5 / 3)  # (2 + 4/3 + 5/3) / 3
    assert help_cmp.result.p_permutation == pytest.approx(2 / 8)  # exact: all 3 signs agree
    expected = compare_paired([7 / 3, 3.0, 4 / 3], [13 / 3, 13 / 3, 3.0])
    assert help_cmp.result == expected
    # accuracy: baseline 3, 2, 3 against 4, 5, 4 per item
    assert cmp["accuracy"].result.diff == pytest.approx(5 / 3)


def test_import_alpha_matches_krippendorff_on_the_expected_matrix(tmp_path):
    key, paths = _three_sheets(tmp_path)
    result = import_sheets(paths, key)
    # units = (item, system), raters = the three sheets
    matrix = [list(by_rater) for by_rater in SCORES["helpfulness"].values()]
    for level in ("ordinal", "interval"):
        expected = krippendorff_alpha(matrix, level=level)
        assert result.agreement["helpfulness"][level] == pytest.approx(expected)
    assert 0.5 < result.agreement["helpfulness"]["interval"] < 1.0
    # accuracy: raters agree on every unit and units differ -> perfect agreement
    assert result.agreement["accuracy"] == pytest.approx({"ordinal": 1.0, "interval": 1.0})


def test_import_unblinds_from_the_text_the_rater_saw(tmp_path):
    # The rater judges the text only (no key): "better" answers get 5, the others 1.
    key = _export(tmp_path, n=6, jsonl=False)
    rows = _read_csv(tmp_path / "sheet.csv")
    for row in rows:
        for k in ("1", "2"):
            score = "5" if row[f"response_{k}"].startswith("better") else "1"
            row.update({f"response_{k}_{c}": score for c in CRIT})
    rows[0]["comment"] = "Response 2 rambles"
    result = import_sheets([_write_csv(tmp_path / "r1.csv", rows)], key)
    assert {r.score for r in result.ratings if r.system == CAND} == {5}
    assert {r.score for r in result.ratings if r.system == BASE} == {1}
    assert result.comments == ({"rater": "r1", "item_id": "q1", "comment": "Response 2 rambles"},)
    assert result.agreement["helpfulness"] == {"ordinal": None, "interval": None}
    assert any("2 raters" in note for note in result.notes)


def test_import_reads_spreadsheet_variants(tmp_path):
    # Semicolons (Excel in some locales), no BOM, "4.0" (pandas), spaces, an extra column and
    # blank trailing rows.
    key = _export(tmp_path, jsonl=False)
    rows = _read_csv(tmp_path / "sheet.csv")
    for row in rows:
        row.update(response_1_helpfulness="4.0", response_2_helpfulness=" 2 ", notes="x")
    path = _write_csv(tmp_path / "semi.csv", rows, delimiter=";")
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write(";;;;\r\n\r\n")
    result = import_sheets([path], key)
    assert sorted({r.score for r in result.ratings if r.criterion == "helpfulness"}) == [2, 4]
    assert result.n_missing == 6  # accuracy left empty


def test_import_one_file_with_a_rater_column_holds_several_raters(tmp_path):
    key = _export(tmp_path, jsonl=False)
    rows = _read_csv(tmp_path / "sheet.csv")
    both = [
        {**r, "rater": name} for name, i in (("ann", 0), ("bob", 1)) for r in _fill(rows, key, i)
    ]
    result = import_sheets([_write_csv(tmp_path / "all.csv", both)], key)
    assert result.raters == ("ann", "bob")
    assert result.missing_by_rater == {"ann": 0, "bob": 1}


def test_result_to_dict_is_json_and_format_has_tables(tmp_path):
    key, paths = _three_sheets(tmp_path)
    result = import_sheets(paths, key)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["n_missing"] == 3 and data["raters"] == list(RATERS)
    assert data["scores"][BASE]["helpfulness"]["n"] == 8
    assert data["comparisons"][0]["criterion"] == "helpfulness"
    text = result.format()
    assert "3 raters (ann, bob, cy)" in text and "3 of 36 score cells empty" in text
    assert f"helpfulness  {BASE}" in text and "ordinal" in text and "+1.667" in text


# --- validation -----------------------------------------------------------------------------


def _set(column, value, row=1):
    def edit(rows):
        rows[row][column] = value

    return edit


def _drop(column):
    def edit(rows):
        for r in rows:
            del r[column]

    return edit


@pytest.mark.parametrize(
    ("edit", "row", "column", "words"),
    [
        (_set("response_2_accuracy", "6"), 2, "response_2_accuracy", ["'6'", "1-5", "'q2'"]),
        (_set("response_1_helpfulness", "good"), 2, "response_1_helpfulness", ["'good'", "'q2'"]),
        (_set("response_1_accuracy", "3.5", row=2), 3, "response_1_accuracy", ["'3.5'", "whole"]),
        (_set("item_id", "q99"), 2, "item_id", ["'q99'", "not an item"]),
        (_drop("response_2_helpfulness"), None, "response_2_helpfulness", ["no column"]),
    ],
)
def test_import_errors_name_file_row_and_column(tmp_path, edit, row, column, words):
    key = _export(tmp_path, jsonl=False)
    rows = _fill(_read_csv(tmp_path / "sheet.csv"), key, 0)
    edit(rows)
    path = _write_csv(tmp_path / "ann.csv", rows)
    with pytest.raises(DataFormatError) as err:
        import_sheets([path], key)
    e = err.value
    assert (e.path, e.row, e.field) == (path, row, column)
    message = str(e)
    assert str(path) in message and f"field '{column}'" in message and "Fix:" in message
    for word in words:
        assert word in message
    if row is not None:
        assert f"data row {row}" in message


def test_import_rejects_a_jsonl_boolean_score(tmp_path):
    key = _export(tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "sheet.jsonl").read_text().splitlines()]
    rows[0]["response_1_accuracy"] = True
    path = tmp_path / "ann.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataFormatError, match="True is not a number") as err:
        import_sheets([path], key)
    assert (err.value.row, err.value.field) == (1, "response_1_accuracy")


def test_import_rejects_a_sheet_that_does_not_match_the_key(tmp_path):
    key = _export(tmp_path, jsonl=False)
    rows = _read_csv(tmp_path / "sheet.csv")
    short = _write_csv(tmp_path / "short.csv", rows[:2])
    with pytest.raises(DataFormatError, match="no row for 1 of the key's 3 items: 'q3'"):
        import_sheets([short], key)
    wide = _write_csv(tmp_path / "wide.csv", [{**r, "response_3_accuracy": ""} for r in rows])
    with pytest.raises(DataFormatError, match="not in the key") as err:
        import_sheets([wide], key)
    assert err.value.field == "response_3_accuracy"
    twice = _write_csv(tmp_path / "twice.csv", [*rows, rows[0]])
    with pytest.raises(DataFormatError, match="data rows 1 and 4"):
        import_sheets([twice], key)


def test_import_rejects_one_rater_in_two_sheets(tmp_path):
    key = _export(tmp_path, jsonl=False)
    rows = [{**r, "rater": "ann"} for r in _read_csv(tmp_path / "sheet.csv")]
    a = _write_csv(tmp_path / "a.csv", rows)
    b = _write_csv(tmp_path / "b.csv", rows)
    with pytest.raises(DataFormatError, match="rater 'ann' already has a sheet") as err:
        import_sheets([a, b], key)
    assert err.value.path == b


def test_import_rejects_bad_files(tmp_path):
    key = _export(tmp_path, jsonl=False)
    rows = _read_csv(tmp_path / "sheet.csv")
    cp1252 = _write_csv(tmp_path / "win.csv", [{**rows[0], "comment": "café"}], encoding="cp1252")
    with pytest.raises(DataFormatError, match="not UTF-8.*CSV UTF-8"):
        import_sheets([cp1252], key)
    with pytest.raises(DataFormatError, match="workbook"):
        import_sheets([tmp_path / "ann.xlsx"], key)
    with pytest.raises(DataFormatError, match="key"):
        import_sheets([tmp_path / "sheet.csv"], tmp_path / "sheet.jsonl")


@pytest.mark.parametrize(
    ("cell", "score"),
    [("4", 4), (" 5 ", 5), ("1.0", 1), (3, 3), (2.0, 2), ("", None), ("  ", None), (None, None)],
)
def test_parse_score_accepts_whole_numbers_1_to_5_and_empty(cell, score):
    assert parse_sheet_cell(cell) == score
    assert parse_sheet_cell(float("nan")) is None


@pytest.mark.parametrize(
    ("cell", "why"),
    [
        ("0", "outside"),
        (6, "outside"),
        ("3.5", "whole"),
        ("good", "not a number"),
        ("n/a", "not a number"),
        (True, "not a number"),
        ("1e0", "not a number"),
    ],
)
def test_parse_score_rejects_everything_else(cell, why):
    with pytest.raises(ValueError, match=why):
        parse_sheet_cell(cell)


def test_summarize_ratings_rejects_a_cell_rated_twice():
    rating = Rating("q1", BASE, "helpfulness", "ann", 3)
    with pytest.raises(ValueError, match="twice"):
        summarize_ratings([rating, rating])
