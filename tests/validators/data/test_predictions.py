"""The predictions-file reader: the contract, and errors that name the column or line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from validators.data.predictions import PredictionsInvalid, read_predictions


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "predictions.csv"
    path.write_text(text)
    return path


def test_binary_file_reads_into_arrays_and_attributes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "case_id,patient_id,label,score,sex,age\n"
        "c1,p1,1,0.9,F,54\n"
        "c2,p1,0,0.2,F,54\n"
        "c3,p2,0,0.4,,70\n",
    )
    predictions = read_predictions(path)
    assert predictions.task == "binary"
    assert predictions.y_true.tolist() == [True, False, False]
    np.testing.assert_array_equal(predictions.y_score, [0.9, 0.2, 0.4])
    assert predictions.n_patients == 2
    assert predictions.attributes["sex"].tolist() == ["F", "F", None]
    assert predictions.attributes["age"].tolist() == ["54", "54", "70"]


def test_multilabel_file_pairs_label_and_score_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "case_id,patient_id,label:effusion,score:effusion,label:nodule,score:nodule,site\n"
        "c1,p1,1,0.8,0,0.1,A\n"
        "c2,p2,0,0.3,1,0.7,B\n",
    )
    predictions = read_predictions(path)
    assert predictions.task == "multilabel"
    assert predictions.labels == ("effusion", "nodule")
    assert predictions.y_true.tolist() == [[True, False], [False, True]]
    assert predictions.y_score.shape == (2, 2)
    assert list(predictions.attributes) == ["site"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("patient_id,label,score\np1,1,0.5\n", "column 'case_id' is missing"),
        ("case_id,patient_id,label,score\n", "no rows"),
        ("case_id,patient_id,label,score\nc1,p1,2,0.5\n", "line 2 has '2' but a label is 0 or 1"),
        ("case_id,patient_id,label,score\nc1,p1,1,\n", "column 'score': line 2"),
        ("case_id,patient_id,label,score\nc1,p1,1,nan\n", "a score is a finite number"),
        ("case_id,patient_id,label,score\nc1,p1,1,abc\n", "a score is a finite number"),
        ("case_id,patient_id,label,score\nc1,p1,1,0.5\nc1,p2,0,0.5\n", "lines 2, 3"),
        ("case_id,patient_id,label,score\nc1,,1,0.5\n", "'patient_id' is empty on lines 2"),
        ("case_id,patient_id,label\nc1,p1,1\n", "column 'score' is missing"),
        ("case_id,patient_id,label:a,score:b\nc1,p1,1,0.5\n", "needs both label:a and score:a"),
        ("case_id,patient_id,label,score,label:a,score:a\nc1,p1,1,.5,1,.5\n", "mixes binary"),
        ("case_id,patient_id,sex\nc1,p1,F\n", "no label and score columns"),
    ],
)
def test_bad_files_are_refused_with_the_column_or_line(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(PredictionsInvalid, match=message):
        read_predictions(write(tmp_path, text))


def test_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PredictionsInvalid, match="empty"):
        read_predictions(write(tmp_path, ""))


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PredictionsInvalid, match="no predictions file"):
        read_predictions(tmp_path / "absent.csv")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "case_id,patient_id,label,score,score",
            r"column 'score' appears 2 times \(columns 4 and 5\); "
            r"each column name must appear once\. Rename or remove the repeated columns",
        ),
        (
            "case_id,patient_id,label,score,label",
            r"column 'label' appears 2 times \(columns 3 and 5\)",
        ),
        (
            "case_id,patient_id,label,score,sex,sex",
            r"column 'sex' appears 2 times \(columns 5 and 6\)",
        ),
        (
            "case_id,patient_id,label,score, score ",
            r"column 'score' appears 2 times \(columns 4 and 5\)",
        ),
        (
            "case_id,patient_id,score,label,site,score,site,score",
            r"column 'score' appears 3 times \(columns 3, 6 and 8\); "
            r"column 'site' appears 2 times \(columns 5 and 7\); each column name must appear once",
        ),
        (
            "case_id,case_id,label:a,score:a,label:a,score:a",
            r"column 'case_id' appears 2 times \(columns 1 and 2\)",
        ),
    ],
)
def test_a_repeated_column_name_is_refused_with_its_positions(
    tmp_path: Path, header: str, message: str
) -> None:
    """pandas would rename the second `score` to `score.1`: the first one silently scored."""
    width = header.count(",") + 1
    rows = "".join(f"c{i},p{i}," + ",".join(["1"] * (width - 2)) + "\n" for i in range(3))
    with pytest.raises(PredictionsInvalid, match=message):
        read_predictions(write(tmp_path, header + "\n" + rows))


def test_a_repeated_column_behind_a_byte_order_mark_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "predictions.csv"
    path.write_bytes(b"\xef\xbb\xbfcase_id,case_id,patient_id,label,score\nc1,c1,p1,1,0.5\n")
    with pytest.raises(PredictionsInvalid, match=r"column 'case_id' appears 2 times"):
        read_predictions(path)


def test_a_header_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    path = tmp_path / "predictions.csv"
    path.write_bytes(b"\xef\xbb\xbfcase_id,patient_id,label,score\nc1,p1,1,0.5\nc2,p2,0,0.25\n")
    predictions = read_predictions(path)
    assert predictions.case_ids.tolist() == ["c1", "c2"]
    assert predictions.attributes == {}


def test_a_row_with_one_field_too_many_is_refused_not_shifted(tmp_path: Path) -> None:
    """pandas would take the first field of such rows as an index and shift every column left."""
    path = write(tmp_path, "case_id,patient_id,label,score\nc1,p1,1,0.5,x\nc2,p2,0,0.2,y\n")
    with pytest.raises(PredictionsInvalid) as caught:
        read_predictions(path)
    assert str(caught.value) == (
        "line 2 has 5 fields but the header has 4; give every line one field per header column, "
        "and quote a value that contains a comma."
    )


def test_a_file_that_is_not_utf8_is_refused_saying_so(tmp_path: Path) -> None:
    path = tmp_path / "predictions.csv"
    path.write_bytes("case_id,patient_id,label,score\nc1,p1,1,0.5,é\n".encode("utf-16"))
    with pytest.raises(PredictionsInvalid, match=r"is not UTF-8 text \(.+\); save it as a UTF-8"):
        read_predictions(path)


def test_an_unterminated_quote_is_refused_without_the_parser_s_jargon(tmp_path: Path) -> None:
    path = write(tmp_path, 'case_id,patient_id,label,score\n"c1,p1,1,0.5\n')
    with pytest.raises(PredictionsInvalid) as caught:
        read_predictions(path)
    message = str(caught.value)
    assert message.startswith("the predictions file is not a readable CSV (EOF inside string")
    assert "C error" not in message and "\n" not in message


def test_a_repeated_case_id_is_named_as_plain_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "case_id,patient_id,label,score\nc1,p1,1,0.5\nc3,p2,0,0.5\nc3,p3,1,0.5\n",
    )
    with pytest.raises(PredictionsInvalid) as caught:
        read_predictions(path)
    assert str(caught.value) == (
        "case_id 'c3' appears on more than one line (lines 3, 4); a case_id is unique."
    )
