"""Regenerate the Python code for `proto/wasmagent/v1/agent.proto` (grpcio-tools, pinned in
requirements-dev.txt): `.venv/bin/python proto/generate.py`.

The output is committed (app/wasmagent/hosts/server/grpc_api/agent_pb2*.py*), so the server needs
only grpcio and protobuf at run time, and mypy sees the typed `.pyi`. It is reproducible:
`tests/server/test_grpc.py` regenerates it into a temporary folder and fails when it differs
from what is committed (a `.proto` edited without regenerating, or another grpcio-tools).
"""

from __future__ import annotations

import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PROTO = "wasmagent/v1/agent.proto"
OUT = ROOT / "app" / "wasmagent" / "hosts" / "server" / "grpc_api"
GENERATED = ("agent_pb2.py", "agent_pb2.pyi", "agent_pb2_grpc.py")
# protoc writes imports after the .proto's package path (`wasmagent.v1`), which is not where
# the code lives: the service module imports its messages relatively instead.
ABSOLUTE_IMPORT = "from wasmagent.v1 import agent_pb2 as"
RELATIVE_IMPORT = "from . import agent_pb2 as"


def generate(out: Path) -> list[Path]:
    """Write the generated modules into `out`; returns their paths."""
    from grpc_tools import protoc

    well_known = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={tmp}",
                f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", str(PROTO_ROOT / PROTO)]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {PROTO}")
        made = Path(tmp) / "wasmagent" / "v1"
        paths = []
        for name in GENERATED:
            text = (made / name).read_text().replace(ABSOLUTE_IMPORT, RELATIVE_IMPORT)
            path = out / name
            path.write_text(text)
            paths.append(path)
    return paths


if __name__ == "__main__":
    for written in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(written.relative_to(ROOT) if written.is_relative_to(ROOT) else written)
