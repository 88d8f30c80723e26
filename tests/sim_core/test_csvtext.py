"""The one CSV writer: standard quoting, full floats, no cell a spreadsheet runs as a formula."""

import csv
import io
import math

import numpy as np

from sim_core import csv_records, csv_table


def read(text):
    return list(csv.reader(io.StringIO(text)))


def test_text_starting_like_a_formula_is_written_as_text():
    text = csv_table(
        ["nickname"],
        [['=HYPERLINK("http://x","y")'], ["+1+1"], ["-A1"], ["@SUM(A1)"], ["\tX"], ["\rX"]],
    )
    assert [row[0] for row in read(text)[1:]] == [
        '\'=HYPERLINK("http://x","y")',
        "'+1+1",
        "'-A1",
        "'@SUM(A1)",
        "'\tX",
        "'\nX",  # a line break in a cell is written as a newline
    ]


def test_numbers_negative_ones_included_stay_numbers():
    rows = read(csv_table(["a", "b", "c", "d"], [[-0.25, -3, np.float64(-1.5), "-2.5"]]))
    assert rows[1] == ["-0.25", "-3", "-1.5", "-2.5"]


def test_floats_are_written_in_full_and_missing_values_are_empty():
    rows = read(csv_table(["x", "y", "z", "w"], [[0.1 + 0.2, None, math.nan, True]]))
    assert float(rows[1][0]) == 0.1 + 0.2
    assert rows[1][1:] == ["", "", "1"]


def test_commas_quotes_and_newlines_round_trip():
    tricky = 'Ana, "the bold"\nsecond line'
    assert read(csv_table(["nickname"], [[tricky]]))[1] == [tricky]


def test_records_follow_the_columns_given():
    text = csv_records([{"b": 2, "a": 1, "extra": 9}, {"a": 3}], ["a", "b"])
    assert text == "a,b\n1,2\n3,\n"
