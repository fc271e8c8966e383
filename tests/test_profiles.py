"""Every shipped profile validates; each kind of malformed profile is refused with the file and field named."""

from pathlib import Path

import pytest
import yaml

from toolkit.profiles import ProfileError, list_profiles, load_profile, shipped_profile_paths

SHIPPED = ["android-arm64", "android-nnapi", "arm64-cpu", "raspberry-pi-4", "raspberry-pi-5"]


def test_shipped_profiles_validate():
    assert sorted(shipped_profile_paths()) == SHIPPED
    profiles = {p.name: p for p in list_profiles()}
    assert profiles["raspberry-pi-4"].device.qemu_cpu == "cortex-a72"
    assert "asimddp" not in profiles["raspberry-pi-4"].device.features  # ARMv8.0: no dotprod
    assert "fphp" not in profiles["raspberry-pi-4"].device.features  # no fp16 arithmetic
    assert profiles["raspberry-pi-5"].device.qemu_cpu == "cortex-a76"
    assert "asimddp" in profiles["raspberry-pi-5"].device.features
    nnapi = profiles["android-nnapi"]
    assert any(a.delegate == "nnapi" and a.recipe == "full-int8" for a in nnapi.artifacts)
    assert nnapi.student.activations == ["relu"]
    assert "legacy" in nnapi.description.lower() and "API 35" in nnapi.description
    android = profiles["android-arm64"]  # today's Android path: XNNPACK on the CPU, stock GELU/LayerNorm student
    assert android.device.os == "android" and android.device.qemu_cpu == "cortex-a76"
    assert {(a.format, a.recipe, a.runtime, a.delegate) for a in android.artifacts} == {
        ("tflite", "dynamic-int8", "ai-edge-litert", "xnnpack"), ("tflite", "fp32", "ai-edge-litert", "xnnpack"),
        ("pte", "int8-dynamic-embedding", "executorch", "xnnpack"), ("pte", "fp32", "executorch", "xnnpack")}
    assert (android.student.activations[0], android.student.normalisations[0]) == ("gelu", "layernorm")
    for profile in profiles.values():
        assert profile.device.qemu_cpu != "max"
        assert {a.format for a in profile.artifacts} <= {"pte", "tflite"}


def write_variant(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(shipped_profile_paths()["raspberry-pi-4"].read_text())
    edit(data)
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_user_profile_file_loads(tmp_path):
    path = write_variant(tmp_path, lambda d: d.update(name="my-board", sequence_length=64, sequence_lengths=[32, 64]))
    profile = load_profile(path)
    assert profile.name == "my-board" and profile.sequence_length == 64


MALFORMED = [
    ("missing field", lambda d: d["device"].pop("qemu_cpu"), "device.qemu_cpu"),
    ("wrong type", lambda d: d.__setitem__("sequence_length", "long"), "sequence_length"),
    ("out of range", lambda d: d.__setitem__("sequence_length", 4), "sequence_length"),
    ("unknown key", lambda d: d["budgets"].__setitem__("artifcat_mb", 3), "budgets.artifcat_mb"),
    ("qemu max", lambda d: d["device"].__setitem__("qemu_cpu", "max"), "never"),
    ("bad recipe", lambda d: d["artifacts"][0].__setitem__("recipe", "int4"), "recipe 'int4'"),
    ("wrong runtime", lambda d: d["artifacts"][0].__setitem__("runtime", "ai-edge-litert"), "executorch"),
    ("nnapi without full int8", lambda d: d["artifacts"].append(
        {"format": "tflite", "recipe": "fp32", "runtime": "ai-edge-litert", "delegate": "nnapi"}), "full-integer"),
    ("duplicate artifact", lambda d: d["artifacts"].append(dict(d["artifacts"][0])), "listed twice"),
    ("bad activation", lambda d: d["student"].__setitem__("activations", ["swish"]), "student.activations"),
    ("heads do not divide", lambda d: d["student"].__setitem__("n_head", 7), "divisible"),
    ("memory range", lambda d: d["device"].__setitem__("memory_mb_min", 99999), "memory_mb_min"),
]


@pytest.mark.parametrize("case,edit,expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_profile_names_file_and_field(tmp_path, case, edit, expected):
    path = write_variant(tmp_path, edit)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_not_yaml_and_not_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ProfileError, match="mapping"):
        load_profile(bad)


def test_unknown_profile_name_lists_shipped():
    with pytest.raises(ProfileError, match="raspberry-pi-4"):
        load_profile("raspberry-pi-9")


def test_the_route_is_the_profiles_unless_the_command_line_names_one():
    from toolkit.cli import _for_profile
    from toolkit.distill import DistillSettings

    profile = load_profile("arm64-cpu")
    pruning = profile.model_copy(update={"student": profile.student.model_copy(update={"route": "prune"})})
    assert _for_profile(DistillSettings(route=None), pruning).route == "prune"
    assert _for_profile(DistillSettings(route="fresh"), pruning).route == "fresh"
    assert _for_profile(DistillSettings(route=None), profile).route == profile.student.route
