"""Regenerate ``caffe_pb2.py`` from ``caffe.proto``: ``python -m models.convert.caffe_proto.regen``.

The generated module is committed so that converting a Caffe model needs no protoc;
``tests/convert/test_caffe_proto.py`` regenerates it into a temp dir and fails if the
committed one is stale.
"""
from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PROTO = "caffe.proto"
OUTPUT = "caffe_pb2.py"


def generate(out_dir: Path = PROTO_DIR) -> Path:
    """Run protoc (grpcio-tools) on caffe.proto, writing ``caffe_pb2.py`` into ``out_dir``."""
    try:
        from grpc_tools import protoc
    except ImportError:
        sys.exit("grpcio-tools is needed to regenerate caffe_pb2.py: pip install -e '.[dev]'")
    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{PROTO_DIR}", f"--python_out={out_dir}", str(PROTO_DIR / PROTO)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")
    # A private descriptor pool: a process that also imports Caffe's own caffe_pb2
    # (pycaffe, other converters) would otherwise fail on the duplicate 'caffe.*' names.
    module = out_dir / OUTPUT
    module.write_text(module.read_text().replace(
        "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(",
        "POOL = _descriptor_pool.DescriptorPool()\nDESCRIPTOR = POOL.AddSerializedFile(",
    ))
    return module


if __name__ == "__main__":
    print(f"wrote {generate()}")
