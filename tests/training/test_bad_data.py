"""Malformed L.POINT exports: `wdrec train` exits 2 with one line naming file, column and row, and leaves the
served artifact set (`current` and every file under it) untouched; quirks that are not errors load correctly.

Every bad folder is the hand-made tiny folder (tests/training/conftest.py) with one fault written into it.
Row numbers are file lines: header 1, data from 2 (Product 2..154, Session 2..52, Custom 2..5, Master 2..7).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from tests.training.conftest import write_lpoint
from training.artifacts import load_artifacts
from training.cli import main
from training.load import Tables, load_tables

WDREC = Path(sys.executable).with_name("wdrec")
TEN_MB = 10 << 20

Break = Callable[[Path], None]


@dataclass(frozen=True)
class Fault:
    """One way to break the folder and where the message must point (None: nothing to point at)."""

    breaks: Break
    file: str | None
    column: str | None = None
    row: int | None = None


def _edit(file: str, change: Callable[[bytes], bytes]) -> Break:
    def breaks(folder: Path) -> None:
        path = folder / file
        path.write_bytes(change(path.read_bytes()))

    return breaks


def _append(file: str, line: bytes) -> Break:
    return _edit(file, lambda data: data + line + b"\n")


def _replace(file: str, data: bytes) -> Break:
    return _edit(file, lambda _: data)


def _line(file: str, row: int, line: bytes) -> Break:
    """Replace file line `row` (1 = header)."""

    def change(data: bytes) -> bytes:
        lines = data.splitlines(keepends=True)
        lines[row - 1] = line + b"\n"
        return b"".join(lines)

    return _edit(file, change)


def _repeat_line(file: str, row: int) -> Break:
    return _edit(file, lambda data: data + data.splitlines(keepends=True)[row - 1])


def _truncate_last_line(keep_fields: int) -> Break:
    """Product.csv cut inside its last line, after `keep_fields` fields, with no final newline."""

    def change(data: bytes) -> bytes:
        head, last = data.rstrip(b"\r\n").rsplit(b"\n", 1)
        return head + b"\n" + b",".join(last.split(b",")[:keep_fields]) + b","

    return _edit("Product.csv", change)


def _delimiter(file: str, separator: bytes) -> Break:
    return _edit(file, lambda data: data.replace(b",", separator))


def _header(file: str, header: bytes) -> Break:
    return _line(file, 1, header)


def _remove(file: str) -> Break:
    return lambda folder: (folder / file).unlink()


def _directory(file: str) -> Break:
    def breaks(folder: Path) -> None:
        (folder / file).unlink()
        (folder / file).mkdir()

    return breaks


def _no_demographics(folder: Path) -> None:
    (folder / "Custom.csv").write_text("CLNT_ID,CLNT_GENDER,CLNT_AGE\n1,,30\n4,,\n", encoding="utf-8")


FAULTS: dict[str, Fault] = {
    "missing file": Fault(_remove("Session.csv"), "Session.csv"),
    "file is a directory": Fault(_directory("Master.csv"), "Master.csv"),
    "missing column": Fault(_header("Custom.csv", b"CLNT_ID,CLNT_GENDER,AGE"), "Custom.csv", "CLNT_AGE", 1),
    "column named twice": Fault(
        _header("Custom.csv", b"CLNT_ID,CLNT_ID,CLNT_AGE"), "Custom.csv", "CLNT_GENDER", 1
    ),
    "semicolon delimiter": Fault(_delimiter("Session.csv", b";"), "Session.csv", None, 1),
    "tab delimiter": Fault(_delimiter("Custom.csv", b"\t"), "Custom.csv", None, 1),
    "truncated last line, PD_C lost": Fault(_truncate_last_line(3), "Product.csv", "PD_C", 154),
    "truncated last line, SESS_ID lost": Fault(_truncate_last_line(1), "Product.csv", "SESS_ID", 154),
    "non-numeric CLNT_ID": Fault(
        _line("Product.csv", 2, b'abc,100,1,6,"39,000"'), "Product.csv", "CLNT_ID", 2
    ),
    "fractional PD_C": Fault(_append("Product.csv", b"1,100,2,1.5,3"), "Product.csv", "PD_C", 155),
    "ID beyond 64 bits": Fault(
        _append("Custom.csv", b"99999999999999999999999,F,30"), "Custom.csv", "CLNT_ID", 6
    ),
    "negative CLNT_ID": Fault(_append("Custom.csv", b"-7,F,30"), "Custom.csv", "CLNT_ID", 6),
    "empty SESS_SEQ": Fault(
        _line("Session.csv", 3, b'1,101,,20180402,"1,890"'), "Session.csv", "SESS_SEQ", 3
    ),
    "empty file": Fault(_replace("Master.csv", b""), "Master.csv", None, 1),
    "blank lines only": Fault(_replace("Custom.csv", b"\n\n\n"), "Custom.csv", None, 1),
    "header only": Fault(_edit("Session.csv", lambda d: d.splitlines(keepends=True)[0]), "Session.csv"),
    "PD_C with two categories": Fault(
        _append("Master.csv", "1,상품 1,가전,가전 기본,청소기".encode()), "Master.csv", "PD_C", 8
    ),
    "orphan PD_C past the tolerance": Fault(
        _edit("Product.csv", lambda d: d + b'1,100,9,99,"1,000"\n' * 3), "Product.csv", "PD_C", 155
    ),
    "orphan sessions past the tolerance": Fault(
        _edit("Product.csv", lambda d: d + b'1,999,2,1,"1,000"\n' * 3), "Product.csv", "SESS_ID", 155
    ),
    "age not a decade": Fault(_line("Custom.csv", 2, b"1,F,25"), "Custom.csv", "CLNT_AGE", 2),
    "negative age": Fault(_append("Custom.csv", b"77,F,-10"), "Custom.csv", "CLNT_AGE", 6),
    "age 200": Fault(_append("Custom.csv", b"77,M,200"), "Custom.csv", "CLNT_AGE", 6),
    "unknown gender code": Fault(_line("Custom.csv", 3, b"3,X,"), "Custom.csv", "CLNT_GENDER", 3),
    "gender spelled out": Fault(_append("Custom.csv", b"77,female,30"), "Custom.csv", "CLNT_GENDER", 6),
    "10 MB single line": Fault(_replace("Product.csv", b"1" * TEN_MB), "Product.csv", "CLNT_ID", 1),
    "10 MB category name": Fault(
        _append("Master.csv", b"7,a,b,c," + b"x" * TEN_MB), "Master.csv", "CLAC3_NM", 8
    ),
    "10 MB number": Fault(_append("Product.csv", b"1,100,2," + b"9" * TEN_MB), "Product.csv", "PD_C", 155),
    "NUL byte in an ID": Fault(
        _line("Product.csv", 2, b'1\x00,100,1,6,"39,000"'), "Product.csv", "CLNT_ID", 2
    ),
    "NUL byte in a category": Fault(
        _edit("Master.csv", lambda d: d.replace("바지".encode(), "바\x00지".encode())),
        "Master.csv",
        "CLAC3_NM",
        6,
    ),
    "NUL bytes only": Fault(_replace("Session.csv", b"\x00" * 1000), "Session.csv", "CLNT_ID", 1),
    "session listed twice": Fault(_repeat_line("Session.csv", 4), "Session.csv", "CLNT_ID, SESS_ID", 53),
    "client listed twice": Fault(_repeat_line("Custom.csv", 3), "Custom.csv", "CLNT_ID", 6),
    "unclosed quote": Fault(_line("Master.csv", 4, b'3,"broken,x,y,z'), "Master.csv", None, 4),
    "neither UTF-8 nor CP949": Fault(
        _replace("Custom.csv", bytes(range(128, 256)) * 50), "Custom.csv", None, 1
    ),
    "CP949 line in a UTF-8 file": Fault(
        _append("Master.csv", b"9,a,b,c," + "한글".encode("cp949")), "Master.csv", None, 8
    ),
    "no client with demographics": Fault(_no_demographics, None),
}
# The slow path: the real console script in a fresh process, for a few faults of different kinds.
SUBPROCESS = ("10 MB single line", "orphan PD_C past the tolerance")


def _fingerprint(root: Path) -> tuple[str, dict[str, str]]:
    """Where `current` points and the SHA-256 of every file under the artifacts root."""
    files = {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }
    return os.readlink(root / "current"), files


@pytest.fixture(scope="module")
def served_root(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's trained artifacts root, so a run that wrongly trained could not touch the
    shared one."""
    root = tmp_path_factory.mktemp("served") / "artifacts"
    shutil.copytree(tiny_artifacts, root, symlinks=True)
    return root


def _bad_folder(tmp_path: Path, fault: Fault) -> Path:
    folder = write_lpoint(tmp_path / "bad")
    fault.breaks(folder)
    return folder


def _assert_one_clear_line(stderr: str, fault: Fault) -> None:
    """One error line (beside logging's lines), no traceback, pointing at the fault."""
    assert "Traceback" not in stderr, stderr
    err = "".join(line for line in stderr.splitlines(keepends=True) if line.startswith("wdrec "))
    assert err.endswith("\n") and err.count("\n") == 1, stderr
    assert err.startswith("wdrec train: error: "), err
    assert len(err) < 600, err  # a 10 MB value is quoted cut short
    if fault.file is not None:
        assert err.startswith(f"wdrec train: error: {fault.file}"), err
    if fault.column is not None:
        assert f"column {fault.column}" in err, err
    if fault.row is not None:
        assert f"row {fault.row}:" in err, err


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in FAULTS if n not in SUBPROCESS])
def test_train_on_bad_data_exits_2_names_the_fault_and_keeps_current(
    name: str, served_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fault = FAULTS[name]
    folder = _bad_folder(tmp_path, fault)
    before = _fingerprint(served_root)
    capsys.readouterr()
    status = main(["train", "--data", str(folder), "--artifacts", str(served_root)])
    err = capsys.readouterr().err
    assert status == 2, err
    _assert_one_clear_line(err, fault)
    assert _fingerprint(served_root) == before


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBPROCESS)
def test_wdrec_command_on_bad_data_exits_2_and_current_still_loads(
    name: str, served_root: Path, tmp_path: Path
) -> None:
    fault = FAULTS[name]
    folder = _bad_folder(tmp_path, fault)
    before = _fingerprint(served_root)
    command = [str(WDREC), "train", "--data", str(folder), "--artifacts", str(served_root)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    _assert_one_clear_line(done.stderr, fault)
    assert _fingerprint(served_root) == before
    assert load_artifacts(served_root).path.name == before[0]  # still verifies, still the served version


def test_fault_suite_covers_the_issue_list() -> None:
    assert len(FAULTS) >= 20
    assert set(SUBPROCESS) <= set(FAULTS)


# --- quirks that are not faults: the same tables as the clean folder -------------------------------------


def _bom(folder: Path) -> None:
    for path in folder.glob("*.csv"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


def _crlf(folder: Path) -> None:
    for path in folder.glob("*.csv"):
        path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


def _cp949(folder: Path) -> None:
    write_lpoint(folder, encoding="cp949")


def _search_files_and_blank_padding(folder: Path) -> None:
    (folder / "Search1.csv").write_bytes(b"\xff\xfe not even text")
    _edit("Custom.csv", lambda d: d.replace(b",F,", b",  F  ,"))(folder)


def _reordered_columns_with_extras(folder: Path) -> None:
    frame = pl.read_csv(folder / "Session.csv", infer_schema=False)
    frame.select("SESS_SEQ", "TOT_SESS_HR_V", "SESS_ID", "CLNT_ID", "SESS_DT").with_columns(
        DVC_CTG_NM=pl.lit("mobile")
    ).write_csv(folder / "Session.csv")


QUIRKS: dict[str, Break] = {
    "UTF-8 BOM": _bom,
    "CRLF line ends": _crlf,
    "CP949 text": _cp949,
    # The same values as the clean row 2 (1,100,1,20180401,"1,890"), spelled the way exports spell them.
    "thousands separators and integral floats": _line("Session.csv", 2, b'1,100,1.0,"20,180,401"," 1,890 "'),
    "Search files and blank padding": _search_files_and_blank_padding,
    "reordered columns and extra ones": _reordered_columns_with_extras,
    "Master row repeated identically": _repeat_line("Master.csv", 2),
}


def _same_tables(a: Tables, b: Tables) -> bool:
    frames = ("product", "session", "custom", "master")
    return all(getattr(a, f).equals(getattr(b, f)) for f in frames) and a.orphans == b.orphans


@pytest.fixture(scope="module")
def clean_tables(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    return load_tables(write_lpoint(tmp_path_factory.mktemp("clean") / "lpoint"))


@pytest.mark.parametrize("name", list(QUIRKS))
def test_quirky_export_loads_like_the_clean_one(name: str, clean_tables: Tables, tmp_path: Path) -> None:
    folder = write_lpoint(tmp_path / "quirky")
    QUIRKS[name](folder)
    assert _same_tables(load_tables(folder), clean_tables)


def test_duplicated_product_rows_are_kept_as_repeat_purchases(clean_tables: Tables, tmp_path: Path) -> None:
    folder = write_lpoint(tmp_path / "dup")
    _repeat_line("Product.csv", 2)(folder)
    _repeat_line("Product.csv", 3)(folder)
    loaded = load_tables(folder)
    assert loaded.product.height == clean_tables.product.height + 2
    assert loaded.product.unique().height == clean_tables.product.unique().height


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp949"])
def test_preprocess_of_a_windows_export_matches_the_clean_one(
    encoding: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Excel on Windows writes CRLF line ends and either a UTF-8 BOM or CP949."""
    clean, quirky = write_lpoint(tmp_path / "clean"), write_lpoint(tmp_path / "quirky", encoding=encoding)
    _crlf(quirky)
    outs = [tmp_path / "out-clean", tmp_path / "out-quirky"]
    assert main(["preprocess", "--data", str(clean), "--out", str(outs[0])]) == 0
    status = main(["preprocess", "--data", str(quirky), "--out", str(outs[1])])
    assert status == 0, capsys.readouterr().err
    parquets = sorted(outs[0].glob("*.parquet"))
    assert parquets
    for parquet in parquets:
        assert pl.read_parquet(parquet).equals(pl.read_parquet(outs[1] / parquet.name)), parquet.name
