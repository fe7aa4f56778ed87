"""The committed protocol modules are fresh, and the wire format is Triton's."""
from __future__ import annotations

from pathlib import Path

import pytest

from protos import generate, inference_pb2

service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")


def test_generated_modules_are_fresh(tmp_path: Path) -> None:
    for fresh in generate.generate(tmp_path):
        committed = generate.PROTO_DIR / fresh.name
        assert committed.read_text() == fresh.read_text(), (
            f"{committed} is stale: run `python -m protos.generate` and commit the result"
        )


def _fields(descriptor):
    return {
        f.name: (f.number, f.type, f.is_repeated, f.containing_oneof.name if f.containing_oneof else None)
        for f in descriptor.fields
    }


def _assert_same_wire(ours, theirs, path: str) -> None:
    their_fields = _fields(theirs)
    for name, spec in _fields(ours).items():
        assert name in their_fields, f"{path}.{name} is not in Triton's schema"
        assert spec == their_fields[name], f"{path}.{name}: ours {spec} != Triton's {their_fields[name]}"
    for nested in ours.nested_types:
        _assert_same_wire(nested, theirs.nested_types_by_name[nested.name], f"{path}.{nested.name}")


@pytest.mark.parametrize("name", sorted(inference_pb2.DESCRIPTOR.message_types_by_name))
def test_every_message_matches_triton_field_by_field(name: str) -> None:
    ours = inference_pb2.DESCRIPTOR.message_types_by_name[name]
    theirs = (service_pb2.DESCRIPTOR.message_types_by_name.get(name)
              or model_config_pb2.DESCRIPTOR.message_types_by_name.get(name))
    if theirs is None:  # messages Triton lacks (its Unload response is in its own file in some versions)
        assert not ours.fields, f"{name} has fields but no Triton counterpart"
        return
    _assert_same_wire(ours, theirs, name)


def test_every_rpc_has_triton_signature() -> None:
    ours = inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert ours.full_name == theirs.full_name == "inference.GRPCInferenceService"
    for method in ours.methods:
        twin = theirs.methods_by_name[method.name]
        assert method.input_type.full_name == twin.input_type.full_name
        assert method.output_type.full_name == twin.output_type.full_name


def test_datatype_enum_matches() -> None:
    ours = {v.name: v.number for v in inference_pb2.DataType.DESCRIPTOR.values}
    theirs = {v.name: v.number for v in model_config_pb2.DataType.DESCRIPTOR.values}
    assert ours == theirs
