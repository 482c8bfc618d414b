"""grpcio as an independent peer: stubs generated from our .proto files inside the test run.

grpcio, grpcio-tools and grpcio-status are test-only dependencies. The generated modules would
be called ``ventros.*`` and clash with our package, so each one is loaded under its own name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTOS = {
    "errors": "ventros/common/errors.proto",
    "memory": "ventros/memory/python_to_go.proto",
    "agents": "ventros/agents/go_to_python.proto",
}


def generate(out: Path) -> dict[str, ModuleType]:
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--python_out={out}", *PROTOS.values()]
    if protoc.main(args) != 0:
        raise RuntimeError("grpcio-tools failed to compile the contract")
    modules = {}
    for key, proto in PROTOS.items():
        path = out / proto.replace(".proto", "_pb2.py")
        name = f"grpcio_peer_{key}_pb2"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        modules[key] = module
    return modules
