"""User data files: reading CSV/TSV/text/.npy points, every way a file can be bad, FileSource
sampling and the seeded train/test split."""

from __future__ import annotations

import os
import pathlib
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vaelab.data.files import (
    EXTENSIONS,
    FileSource,
    load_source,
    read_points,
    split_points,
)
from vaelab.errors import ConfigError, DataFileError, VaelabError


def _write(path: pathlib.Path, content: str | bytes) -> pathlib.Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def _npy_bytes(array: np.ndarray, **kwargs) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, **kwargs)
    return buf.getvalue()


def _assert_bad(path: os.PathLike | str, *fragments: str) -> str:
    """``read_points(path)`` raises a DataFileError whose message is one line, names the file
    and contains every fragment; returns the message."""
    with pytest.raises(DataFileError) as info:
        read_points(path)
    message = str(info.value)
    assert isinstance(info.value, VaelabError)
    assert len(message.splitlines()) == 1 and "\n" not in message and "\r" not in message
    assert repr(str(path)) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert len(message) < 400 + len(str(path))
    return message


# --------------------------------------------------------------------------------------------
# valid files


def test_csv_with_header(tmp_path):
    points = read_points(_write(tmp_path / "p.csv", "x,y\n1,2\n-3.5,4e-3\n.5,6.\n"))
    assert points.dtype == np.float64
    np.testing.assert_array_equal(points, [[1, 2], [-3.5, 4e-3], [0.5, 6.0]])


def test_csv_without_header(tmp_path):
    points = read_points(_write(tmp_path / "p.csv", "1,2\n3,4\n"))
    np.testing.assert_array_equal(points, [[1, 2], [3, 4]])


def test_csv_header_with_some_numeric_names_is_a_header(tmp_path):
    points = read_points(_write(tmp_path / "p.csv", "x,1\n1,2\n3,4\n"))
    assert points.shape == (2, 2)


def test_one_column_with_and_without_header(tmp_path):
    np.testing.assert_array_equal(read_points(_write(tmp_path / "a.csv", "v\n1\n2\n3\n")),
                                  [[1], [2], [3]])
    np.testing.assert_array_equal(read_points(_write(tmp_path / "b.csv", "1\n2\n")), [[1], [2]])


def test_many_columns(tmp_path):
    data = np.arange(5 * 40, dtype=np.float64).reshape(5, 40) / 7
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in data)
    np.testing.assert_array_equal(read_points(_write(tmp_path / "w.csv", text)), data)


def test_crlf_bom_whitespace_quotes_and_trailing_blank_lines(tmp_path):
    raw = "\ufeff x , \"y\" \r\n 1 ,\t2\r\n\"3\", \"4\" \r\n\r\n  \r\n"
    np.testing.assert_array_equal(read_points(_write(tmp_path / "w.csv", raw)),
                                  [[1, 2], [3, 4]])
    # old-Mac CR-only line endings, no final newline
    np.testing.assert_array_equal(read_points(_write(tmp_path / "m.csv", "1,2\r3,4")),
                                  [[1, 2], [3, 4]])


def test_leading_blank_lines_are_skipped(tmp_path):
    np.testing.assert_array_equal(read_points(_write(tmp_path / "l.csv", "\n \n1,2\n3,4")),
                                  [[1, 2], [3, 4]])


def test_uppercase_extension_and_pathlike_and_str(tmp_path):
    path = _write(tmp_path / "P.CSV", "1\n2\n")
    assert read_points(path).shape == read_points(str(path)).shape == (2, 1)


def test_tsv_and_txt(tmp_path):
    np.testing.assert_array_equal(read_points(_write(tmp_path / "a.tsv", "x\ty\n1\t2\n3\t 4\n")),
                                  [[1, 2], [3, 4]])
    data = np.array([[1.5, -2.0], [3.0, 1e-9], [0.0, 7.0]])
    np.savetxt(tmp_path / "b.txt", data)  # space-separated, '%.18e'
    np.testing.assert_array_equal(read_points(tmp_path / "b.txt"), data)
    np.testing.assert_array_equal(read_points(_write(tmp_path / "c.txt", "a b\n1  2\n3\t4\n")),
                                  [[1, 2], [3, 4]])
    np.testing.assert_array_equal(read_points(_write(tmp_path / "d.txt", "1, 2\n3 ,4\n")),
                                  [[1, 2], [3, 4]])


def test_npy_one_and_two_dimensional(tmp_path):
    np.save(tmp_path / "a.npy", np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(read_points(tmp_path / "a.npy"), [[1], [2], [3]])
    data = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "b.npy", data)
    out = read_points(tmp_path / "b.npy")
    assert out.dtype == np.float64 and out.shape == (4, 3)
    np.testing.assert_array_equal(out, data)


def test_npy_integer_big_endian_and_fortran_order(tmp_path):
    np.save(tmp_path / "i.npy", np.arange(6, dtype=np.int16).reshape(3, 2))
    np.testing.assert_array_equal(read_points(tmp_path / "i.npy"), [[0, 1], [2, 3], [4, 5]])
    data = np.asfortranarray(np.arange(6, dtype=">f8").reshape(3, 2))
    np.save(tmp_path / "f.npy", data)
    np.testing.assert_array_equal(read_points(tmp_path / "f.npy"), data)


# --------------------------------------------------------------------------------------------
# bad files: one clear, one-line DataFileError each


def test_missing_file(tmp_path):
    _assert_bad(tmp_path / "nope.csv", "no such file")


def test_directory(tmp_path):
    (tmp_path / "d.csv").mkdir()
    _assert_bad(tmp_path / "d.csv", "is a directory")


def test_unsupported_and_missing_extension(tmp_path):
    msg = _assert_bad(_write(tmp_path / "p.json", "[]"), "'.json'", "accepted")
    for ext in EXTENSIONS:
        assert ext in msg
    _assert_bad(_write(tmp_path / "noext", "1\n2\n"), "no extension", ".csv")
    _assert_bad(_write(tmp_path / "p.npz", b"PK"), "numpy.save")


@pytest.mark.parametrize("name", ["e.csv", "e.npy", "e.txt", "e.tsv"])
def test_empty_file(tmp_path, name):
    _assert_bad(_write(tmp_path / name, b""), "is empty")


def test_blank_only_file(tmp_path):
    _assert_bad(_write(tmp_path / "b.csv", "\n  \r\n\t\n"), "is empty", "blank")


def test_header_only(tmp_path):
    _assert_bad(_write(tmp_path / "h.csv", "x,y\n"), "no data rows", "header", "'x'")
    _assert_bad(_write(tmp_path / "h2.csv", "hello world"), "no data rows")


def test_non_numeric_cell_names_line_column_and_cell(tmp_path):
    msg = _assert_bad(_write(tmp_path / "n.csv", "x,y\n1,2\n3,abc\n"),
                      "line 3, column 2", "'y'", "'abc'", "not a number")
    assert "header" not in msg
    _assert_bad(_write(tmp_path / "n2.csv", "1,2\nfoo,4\n"), "line 2, column 1", "'foo'")


def test_long_bad_cell_is_truncated(tmp_path):
    msg = _assert_bad(_write(tmp_path / "long.csv", "x\n1\n" + "z" * 5000 + "\n"),
                      "line 3, column 1", "...")
    assert "z" * 41 not in msg


@pytest.mark.parametrize("cell", ["1_000", "0x10", "\u0661", "1,5", "1.2.3", "e5", "--1",
                                  "nan(1)", "\u00a01"])
def test_strict_number_syntax(tmp_path, cell):
    content = f'x\n1\n"{cell}"\n'
    _assert_bad(_write(tmp_path / "s.csv", content), "line 3, column 1", "not a number")


def test_semicolon_file_gets_a_hint(tmp_path):
    _assert_bad(_write(tmp_path / "semi.csv", "x;y\n1;2\n3;4\n"), "';'")


def test_ragged_rows(tmp_path):
    _assert_bad(_write(tmp_path / "r.csv", "x,y\n1,2\n3,4,5\n"),
                "line 3 has 3 columns but the header (line 1) has 2")
    _assert_bad(_write(tmp_path / "r2.csv", "1,2\n3,4\n5\n"),
                "line 3 has 1 column but line 1 has 2")
    _assert_bad(_write(tmp_path / "r3.txt", "1 2\n3 4 5\n"), "line 2 has 3 columns")


def test_empty_cell_and_trailing_comma(tmp_path):
    _assert_bad(_write(tmp_path / "e.csv", "1,,2\n3,4,5\n"), "line 1, column 2", "empty cell")
    _assert_bad(_write(tmp_path / "t.csv", "1,2,\n3,4,\n"), "column 3", "trailing separator")


def test_blank_line_between_data_lines(tmp_path):
    _assert_bad(_write(tmp_path / "g.csv", "v\n1\n\n2\n"), "line 3 is blank")


@pytest.mark.parametrize("cell", ["nan", "NaN", "inf", "-inf", "+Infinity", "-NAN"])
def test_non_finite_cells(tmp_path, cell):
    _assert_bad(_write(tmp_path / "f.csv", f"x,y\n1,2\n3,{cell}\n"),
                "line 3, column 2", "non-finite", repr(cell))


def test_non_finite_first_row_is_data_not_header(tmp_path):
    _assert_bad(_write(tmp_path / "f.csv", "nan,1\n2,3\n"), "line 1, column 1", "non-finite")


def test_overflowing_number(tmp_path):
    _assert_bad(_write(tmp_path / "o.csv", "1\n1e999\n"), "line 2, column 1", "float64 range")


def test_fewer_than_two_rows(tmp_path):
    _assert_bad(_write(tmp_path / "one.csv", "1,2\n"), "only 1 data row", "at least 2")
    _assert_bad(_write(tmp_path / "one_h.csv", "x,y\n1,2\n"), "only 1 data row")
    np.save(tmp_path / "one.npy", np.ones((1, 3)))
    _assert_bad(tmp_path / "one.npy", "only 1 data row")
    np.save(tmp_path / "zero.npy", np.ones((0, 3)))
    _assert_bad(tmp_path / "zero.npy", "only 0 data rows")


def test_random_bytes(tmp_path):
    junk = np.random.default_rng(0).bytes(4096)
    _assert_bad(_write(tmp_path / "junk.csv", junk))
    _assert_bad(_write(tmp_path / "junk.npy", junk), "not a NumPy .npy file")


def _png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (len(body).to_bytes(4, "big") + kind + body
                + zlib.crc32(kind + body).to_bytes(4, "big"))
    ihdr = (1).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b""))


def test_image_renamed_csv(tmp_path):
    _assert_bad(_write(tmp_path / "img.csv", _png()), "PNG image")
    _assert_bad(_write(tmp_path / "img.npy", _png()), "not a NumPy .npy file")


def test_binary_that_is_valid_utf8(tmp_path):
    _assert_bad(_write(tmp_path / "nul.csv", b"1,2\n3,\x004\n"), "NUL byte")
    _assert_bad(_write(tmp_path / "ctl.csv", b"1,2\n3,\x014\n"), "control character",
                "line 2")


def test_npy_renamed_csv_and_csv_renamed_npy(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((3, 2)))
    _write(tmp_path / "a.csv", (tmp_path / "a.npy").read_bytes())
    _assert_bad(tmp_path / "a.csv", "NumPy .npy file", "rename")
    _assert_bad(_write(tmp_path / "b.npy", "1,2\n3,4\n"), "looks like text")


def test_truncated_npy(tmp_path):
    raw = _npy_bytes(np.ones((10, 2)))
    _assert_bad(_write(tmp_path / "t.npy", raw[:-5]), "truncated", "(10, 2)")
    _assert_bad(_write(tmp_path / "h.npy", raw[:20]), "corrupt .npy header")
    _assert_bad(_write(tmp_path / "m.npy", raw[:7]), "corrupt .npy header")


def test_npy_with_trailing_bytes(tmp_path):
    raw = _npy_bytes(np.ones((3, 2))) + _npy_bytes(np.ones((3, 2)))
    _assert_bad(_write(tmp_path / "two.npy", raw), "unexpected bytes")


def test_corrupt_npy_headers(tmp_path):
    raw = _npy_bytes(np.ones((3, 2)))
    header_len = int.from_bytes(raw[8:10], "little")
    header = raw[10:10 + header_len]
    cases = {
        "garbage": header.replace(b"'descr'", b"'dexcr'"),
        "syntax": header.replace(b"{", b"["),
        "negative": header.replace(b"(3, 2)", b"(-3,2)"),
        "shape": header.replace(b"(3, 2)", b"'ab'  "),
        "descr": header.replace(b"'<f8'", b"'<q9'"),
    }
    for name, bad in cases.items():
        assert len(bad) == len(header), name
        _assert_bad(_write(tmp_path / f"{name}.npy", raw[:10] + bad + raw[10 + header_len:]),
                    "corrupt .npy header")
    deep = b"{'descr': " + b"(" * 5000 + b")" * 5000 + b"}"
    _assert_bad(_write(tmp_path / "deep.npy", raw[:8] + len(deep).to_bytes(2, "little") + deep),
                "corrupt .npy header")
    version = raw[:6] + b"\x07\x00" + raw[8:]
    _assert_bad(_write(tmp_path / "v7.npy", version), ".npy")


def test_npy_with_pickled_objects_is_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("unpickled!",))

    np.save(tmp_path / "o.npy", np.array([Boom(), Boom()], dtype=object), allow_pickle=True)
    _assert_bad(tmp_path / "o.npy", "Python objects", "never loaded")


@pytest.mark.parametrize("array, fragment", [
    (np.array([1 + 2j, 3j]), "dtype"),
    (np.array(["1", "2"]), "dtype"),
    (np.array([True, False]), "dtype"),
    (np.zeros(3, dtype=[("a", "f8"), ("b", "f8")]), "dtype"),
    (np.zeros((2, 2, 2)), "shape (2, 2, 2)"),
    (np.float64(3.0), "shape ()"),
    (np.zeros((3, 0)), "no columns"),
])
def test_npy_wrong_dtype_or_shape(tmp_path, array, fragment):
    np.save(tmp_path / "w.npy", array)
    _assert_bad(tmp_path / "w.npy", fragment)


def test_npy_non_finite(tmp_path):
    data = np.ones((4, 2))
    data[2, 1] = np.nan
    data[3, 0] = np.inf
    np.save(tmp_path / "n.npy", data)
    _assert_bad(tmp_path / "n.npy", "non-finite value nan at row 3, column 2", "1 more")


def test_not_utf8(tmp_path):
    _assert_bad(_write(tmp_path / "l1.csv", "caf\u00e9,y\n1,2\n3,4\n".encode("latin-1")),
                "not UTF-8", "line 1", "0xe9")
    _assert_bad(_write(tmp_path / "u16.csv", "x,y\n1,2\n3,4\n".encode("utf-16")), "UTF-16")


def test_permission_error_from_the_os(tmp_path, monkeypatch):
    path = _write(tmp_path / "p.csv", "1\n2\n")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "read_bytes", denied)
    _assert_bad(path, "permission denied")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads any file")
def test_permission_error_unreadable_file(tmp_path):
    path = _write(tmp_path / "p.csv", "1\n2\n")
    path.chmod(0)
    try:
        _assert_bad(path, "permission denied")
    finally:
        path.chmod(0o600)


def test_other_os_error(tmp_path, monkeypatch):
    path = _write(tmp_path / "p.csv", "1\n2\n")

    def broken(self):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(pathlib.Path, "read_bytes", broken)
    _assert_bad(path, "Input/output error")


def test_path_with_newline_stays_one_line(tmp_path):
    _assert_bad(tmp_path / "a\nb.csv")


# --------------------------------------------------------------------------------------------
# property-based


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("files_hypothesis")


_FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
_POINTS = arrays(np.float64, st.tuples(st.integers(2, 12), st.integers(1, 6)), elements=_FINITE)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.int64)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=_POINTS, header=st.booleans(), crlf=st.booleans(), bom=st.booleans(),
       final_newline=st.booleans(), sep=st.sampled_from([",", ", ", " ,"]))
def test_round_trip_csv_and_npy(scratch, points, header, crlf, bom, final_newline, sep):
    eol = "\r\n" if crlf else "\n"
    lines = [sep.join(repr(float(v)) for v in row) for row in points]
    if header:
        lines.insert(0, sep.join(f"c{j}" for j in range(points.shape[1])))
    text = ("\ufeff" if bom else "") + eol.join(lines) + (eol if final_newline else "")
    out = read_points(_write(scratch / "rt.csv", text))
    assert out.dtype == np.float64 and out.shape == points.shape
    assert np.array_equal(_bits(out), _bits(points))  # bit-exact, -0.0 included

    np.save(scratch / "rt.npy", points)
    out = read_points(scratch / "rt.npy")
    assert out.dtype == np.float64 and np.array_equal(_bits(out), _bits(points))


def _check_robust(path: pathlib.Path) -> None:
    try:
        out = read_points(path)
    except DataFileError as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1 and repr(str(path)) in message
        return
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    assert out.ndim == 2 and out.shape[0] >= 2 and out.shape[1] >= 1
    assert np.isfinite(out).all()


_TEXTISH = st.text(alphabet=st.sampled_from(list("0123456789.,-+eE \t\r\n\"naifxy;_\ufeff\u00e9")),
                   max_size=80).map(lambda s: s.encode("utf-8"))
_VALID_NPY = [_npy_bytes(np.arange(6, dtype=dt).reshape(shape))
              for dt in ("<f8", ">f4", "<i4") for shape in ((6,), (3, 2))]


@st.composite
def _mutated_npy(draw) -> bytes:
    raw = bytearray(draw(st.sampled_from(_VALID_NPY)))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(raw) - 1))
        raw[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(raw)))
    return bytes(raw[:cut]) if draw(st.booleans()) else bytes(raw)


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=200), _TEXTISH, _mutated_npy()),
       name=st.sampled_from(["r.csv", "r.npy", "r.txt", "r.tsv"]))
# headers that made numpy's header parser raise tokenize.TokenError / SyntaxError
@example(content=b"\x93NUMPY\x01\x00\x06\x00\x00\x00\x00'''", name="r.npy")
@example(content=b"\x93NUMPY\x01\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00(", name="r.npy")
def test_arbitrary_bytes_read_or_raise_data_file_error(scratch, content, name):
    _check_robust(_write(scratch / name, content))


# --------------------------------------------------------------------------------------------
# FileSource


def test_file_source_attributes(tmp_path):
    path = _write(tmp_path / "s.csv", "x,y,z\n1,2,3\n4,5,6\n7,8,9\n")
    src = load_source(path)
    assert isinstance(src, FileSource)
    assert src.name == str(path) and src.dim == 3 and len(src) == 3
    assert src.has_density is False
    assert src.points.dtype == torch.float32 and src.points.device.type == "cpu"
    assert torch.equal(src.points, torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9.0]]))
    with pytest.raises(NotImplementedError):
        src.entropy()


def test_file_source_sampling_is_seeded_and_draws_file_rows(tmp_path):
    data = np.random.default_rng(0).normal(size=(50, 2))
    np.save(tmp_path / "s.npy", data)
    src = FileSource(tmp_path / "s.npy")
    a = src.sample(500, torch.Generator().manual_seed(3))
    b = src.sample(500, torch.Generator().manual_seed(3), "cpu")
    c = src.sample(500, torch.Generator().manual_seed(4), torch.device("cpu"))
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    rows = {tuple(r) for r in src.points.tolist()}
    assert all(tuple(r) in rows for r in a.tolist())
    assert len({tuple(r) for r in a.tolist()}) > 1


def test_file_source_samples_uniformly_with_replacement(tmp_path):
    src = load_source(_write(tmp_path / "u.csv", "0\n1\n2\n3\n"))
    draws = src.sample(20_000, torch.Generator().manual_seed(0)).squeeze(1).long()
    counts = torch.bincount(draws, minlength=4).double()
    assert counts.sum() == 20_000
    assert (counts - 5000).abs().max() < 300  # ~4.9 standard deviations
    assert src.sample(0, torch.Generator()).shape == (0, 1)


def test_file_source_from_split_points_and_float32_overflow(tmp_path):
    path = tmp_path / "big.csv"
    train, _ = split_points(np.arange(10.0).reshape(5, 2), seed=0)
    src = FileSource(path, train)
    assert len(src) == 4 and src.name == str(path)
    _write(path, "1\n1e300\n")
    with pytest.raises(DataFileError, match="float32"):
        load_source(path)


def test_load_source_propagates_data_file_error(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_source(tmp_path / "missing.csv")


# --------------------------------------------------------------------------------------------
# split_points


def test_split_is_deterministic_disjoint_and_complete():
    points = np.arange(200.0).reshape(100, 2)
    train, test = split_points(points, 0.2, seed=7)
    train2, test2 = split_points(points, 0.2, seed=7)
    assert np.array_equal(train, train2) and np.array_equal(test, test2)
    assert train.shape == (80, 2) and test.shape == (20, 2)
    ids_train, ids_test = set(train[:, 0]), set(test[:, 0])
    assert not ids_train & ids_test and ids_train | ids_test == set(points[:, 0])
    assert np.all(np.diff(train[:, 0]) > 0) and np.all(np.diff(test[:, 0]) > 0)  # file order
    other, _ = split_points(points, 0.2, seed=8)
    assert not np.array_equal(train, other)


@pytest.mark.parametrize("n, fraction", [(2, 0.01), (2, 0.99), (3, 0.5), (10, 0.999)])
def test_split_keeps_at_least_one_point_each(n, fraction):
    train, test = split_points(np.arange(float(n)).reshape(n, 1), fraction, seed=0)
    assert len(train) >= 1 and len(test) >= 1 and len(train) + len(test) == n


def test_split_tensors_match_numpy():
    points = np.arange(30.0).reshape(15, 2)
    train, test = split_points(points, 0.3, seed=1)
    t_train, t_test = split_points(torch.from_numpy(points), 0.3, seed=1)
    assert isinstance(t_train, torch.Tensor)
    assert np.array_equal(t_train.numpy(), train) and np.array_equal(t_test.numpy(), test)


def test_split_refusals():
    with pytest.raises(ValueError, match="at least 2"):
        split_points(np.ones((1, 2)), seed=0)
    with pytest.raises(ValueError, match="shape"):
        split_points(np.ones(5), seed=0)
    for bad in (0.0, 1.0, -0.1, 1.5, float("nan"), True, "a"):
        with pytest.raises(ConfigError):
            split_points(np.ones((5, 2)), bad, seed=0)
