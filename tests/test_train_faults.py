"""Hostile inputs to train / evaluate / export: each gives one ``error:`` line and exit 2,
before any work and before anything is written."""

from __future__ import annotations

import pytest

from wildfer.errors import WildferError
from wildfer.paths import check_output_dir, check_output_file


def test_check_output_file_refuses_folders_files_as_parents_and_unwritable(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(WildferError, match=r"--json .*: is a folder, not a file"):
        check_output_file(tmp_path, "--json")
    with pytest.raises(WildferError, match=r"a_file is a file, not a folder"):
        check_output_file(tmp_path / "a_file" / "deeper" / "r.json", "--json")
    # writable places pass: an existing file (overwritten) and a file under folders still to be made
    assert check_output_file(tmp_path / "a_file", "--json") == tmp_path / "a_file"
    assert check_output_file(tmp_path / "new" / "sub" / "r.json", "--json") == tmp_path / "new" / "sub" / "r.json"
    assert not (tmp_path / "new").exists()  # checking writes nothing
    monkeypatch.setattr("wildfer.paths.os.access", lambda p, mode: False)
    with pytest.raises(WildferError, match=r"is not writable"):
        check_output_file(tmp_path / "r.json", "--onnx")
    with pytest.raises(WildferError, match=r"the file is not writable"):
        check_output_file(tmp_path / "a_file", "--onnx")


def test_check_output_dir(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(WildferError, match=r"out .*a_file: is a file, not a folder"):
        check_output_dir(tmp_path / "a_file", "out")
    with pytest.raises(WildferError, match=r"a_file is a file, not a folder"):
        check_output_dir(tmp_path / "a_file" / "run", "out")
    assert check_output_dir(tmp_path / "run" / "x", "out") == tmp_path / "run" / "x"
    monkeypatch.setattr("wildfer.paths.os.access", lambda p, mode: False)
    with pytest.raises(WildferError, match=r"the folder is not writable"):
        check_output_dir(tmp_path, "out")
