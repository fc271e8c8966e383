"""Each bad input gets its own clear message and exit code from the real CLI, never a traceback (cases: bad_inputs.py)."""

import pytest

from bad_inputs import CASES, run_case


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_clearly(case, tmp_path, tiny_teacher_dir, monkeypatch):
    code, output = run_case(case, tmp_path, tiny_teacher_dir, monkeypatch)
    assert code == case.code, output
    message = " ".join(output[output.index("error:"):].split()) if "error:" in output else ""
    assert case.expect in message, output
    assert "Traceback" not in output
    # Nothing that looks like a finished bundle was left behind.
    assert not list(tmp_path.glob("out/*/models/*")), sorted(tmp_path.glob("out/**/*"))
