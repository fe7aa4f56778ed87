"""Regenerate the Python modules for ``inference.proto``: ``python -m protos.generate``.

The generated modules are committed so that installing bwserve needs no protoc;
``tests/test_protos.py`` regenerates them into a temp dir and fails if the
committed ones are stale.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PROTO = "inference.proto"
OUTPUTS = ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")


def generate(out_dir: Path = PROTO_DIR) -> list[Path]:
    """Run protoc (grpcio-tools) on inference.proto, writing into ``out_dir``."""
    try:
        from grpc_tools import protoc
    except ImportError:
        sys.exit("grpcio-tools is needed to regenerate the protos: pip install -e '.[dev]'")
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO_DIR / PROTO),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")
    # Our `inference` package has the same symbol names as Triton's; in the default
    # descriptor pool the two would collide in any process that also imports
    # tritonclient (tests, `serve bench` users). A private pool keeps both usable.
    pb2 = out_dir / "inference_pb2.py"
    pb2.write_text(pb2.read_text().replace(
        "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(",
        "POOL = _descriptor_pool.DescriptorPool()\nDESCRIPTOR = POOL.AddSerializedFile(",
    ))
    grpc_module = out_dir / "inference_pb2_grpc.py"
    # protoc writes a top-level import; the modules live in the `protos` package.
    text = re.sub(r"^import inference_pb2 as", "from protos import inference_pb2 as",
                  grpc_module.read_text(), flags=re.M)
    grpc_module.write_text(text)
    return [out_dir / name for name in OUTPUTS]


if __name__ == "__main__":
    for path in generate():
        print(f"wrote {path}")
