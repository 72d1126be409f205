"""The model's TVM-compiled blocks as the runtime calls them: a VM function per block, run in sequence.

Two ways to get them, both outside the per-frame path:

- :func:`compile_blocks`: compile the model here for this CPU with ``kernels.tvm.compile.compile_model`` and the
  shipped tuning records (needs torch, for ``torch.export``);
- :meth:`TvmBlocks.from_libraries`: load the library written by :func:`export_libraries` (``blocks.so``, one
  function per block): no torch needed, which is how a device without the compiler stack would run.

The blocks are functions of one executable run by one VM (one memory pool for all of them). On the per-frame
path a :class:`TvmBlocks` does nothing but copy the frame in, call each block's VM function
with the previous block's output (a TVM tensor that stays on the device) and copy a feature map out at the
blocks an exit point follows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from engram.errors import EngramError, FormatError

LIBRARIES_MANIFEST = "blocks.json"


@dataclass
class TvmBlocks:
    names: tuple[str, ...]
    functions: list[Callable[[Any], Any]]  # each block's VM "main": TVM tensor -> TVM tensor
    device: Any
    source: str = ""
    _keep: Any = None  # VMs and loaded modules (the functions need them alive)
    _input: Any = None  # the input buffer
    session: Any = None  # the kernels.tvm.rpc.Session the blocks were loaded on (kept open), if any
    function_names: tuple[str, ...] = ()  # each block's function in the executable

    @property
    def vm(self) -> Any:
        """The one VM that runs every block."""
        return self._keep[0]

    @classmethod
    def from_executable(cls, executable: Any, names: Sequence[str], functions: Sequence[str], device=None,  # noqa: ANN001
                        source: str = "") -> "TvmBlocks":
        """The blocks ``names`` as the functions ``functions`` of one executable (or loaded library), on one VM."""
        import tvm
        from tvm import relax

        dev = device or tvm.cpu(0)
        vm = relax.VirtualMachine(executable, dev)
        return cls(tuple(names), [vm[f] for f in functions], dev, source, [vm], function_names=tuple(functions))

    @classmethod
    def from_libraries(cls, directory: str | Path, device=None) -> "TvmBlocks":  # noqa: ANN001
        """Blocks exported by :func:`export_libraries` (``blocks.json`` names them in order and their functions in
        ``blocks.so``)."""
        import tvm

        d = Path(directory)
        manifest = d / LIBRARIES_MANIFEST
        try:
            m = json.loads(manifest.read_text(encoding="utf-8"))
            names, functions, library = list(m["blocks"]), list(m["functions"]), str(m["library"])
        except FileNotFoundError:
            raise FormatError("no blocks.json: not a folder of exported blocks", path=d) from None
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise FormatError(f"not a block list ({exc})", path=manifest) from None
        if len(names) != len(functions):
            raise FormatError(f"{len(names)} blocks but {len(functions)} functions", path=manifest, field="functions")
        lib = d / library
        if not lib.is_file():
            raise FormatError("file not found", path=lib)
        return cls.from_executable(tvm.runtime.load_module(str(lib)), names, functions, device, source=str(d))

    @classmethod
    def on_session(cls, compiled, session) -> "TvmBlocks":  # noqa: ANN001
        """A ``CompiledModel``'s blocks loaded on a :class:`kernels.tvm.rpc.Session`: this CPU, or a device behind
        TVM's RPC server (the blocks' library is uploaded and loaded there; the frames and the feature maps the
        exits read cross the network, the blocks' outputs stay on the device)."""
        vm = session.load(compiled.blocks[0].executable, "blocks")
        return cls(tuple(b.name for b in compiled.blocks), [vm[b.function] for b in compiled.blocks], session.device,
                   f"{compiled.target.name} on {session.address.url}", [vm], session=session,
                   function_names=tuple(b.function for b in compiled.blocks))

    @property
    def remote(self) -> bool:
        """The blocks run behind RPC: the host's clock around a call also times the network."""
        return self.session is not None and self.session.remote is not None

    def input(self, x: np.ndarray) -> Any:
        """The frame as the first block's input: copied into a buffer allocated once (the blocks run synchronously,
        so the previous frame is done with it)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        buf = self._input
        if buf is None or tuple(buf.shape) != x.shape:
            import tvm

            buf = self._input = tvm.runtime.empty(x.shape, "float32", self.device)
        buf.copyfrom(x)
        return buf

    @staticmethod
    def to_numpy(t: Any) -> np.ndarray:
        """A block's output as a numpy array: a zero-copy view where DLPack allows (a CPU tensor), else a copy."""
        try:
            return np.from_dlpack(t)
        except Exception:  # noqa: BLE001 - a remote tensor refuses DLPack with TVM's own error type
            return t.numpy()


def compile_blocks(model, target=None, *, records: str = "auto") -> tuple[TvmBlocks, Any]:  # noqa: ANN001
    """Compile ``model`` (a BlockwiseModel) block by block for this CPU (default) with the shipped tuning records.

    Returns the blocks and the ``CompiledModel`` (for its record info and compile time).
    """
    from kernels.tvm.compile import compile_model

    cm = compile_model(model, target, records=records, whole=False)
    if not cm.target.runnable_locally:
        raise EngramError(f"target {cm.target.name} does not run on this machine")
    blocks = TvmBlocks.from_executable(cm.blocks[0].executable, [b.name for b in cm.blocks], [b.function for b in cm.blocks],
                                       source=f"compiled for {cm.target.name}")
    return blocks, cm


def export_libraries(compiled, directory: str | Path) -> list[Path]:  # noqa: ANN001
    """Write the blocks of a ``CompiledModel`` as one shared library (``blocks.so``, a function per block), plus
    ``blocks.json`` (the blocks in order and their functions)."""
    from engram.fileio import write_json_atomic
    from kernels.tvm.compile import export_executable

    d = Path(directory)
    written = export_executable(compiled.blocks[0].executable, "blocks", d, compiled.target)
    write_json_atomic(d / LIBRARIES_MANIFEST, {"blocks": [b.name for b in compiled.blocks],
                                              "functions": [b.function for b in compiled.blocks],
                                              "library": written[0].name, "target": compiled.target.name})
    return [*written, d / LIBRARIES_MANIFEST]


def remote_blocks(model, session, *, records: str = "auto") -> TvmBlocks:  # noqa: ANN001
    """Compile ``model`` for the target of ``session`` (a :class:`kernels.tvm.rpc.Session` on this CPU or a
    device behind RPC) and load its blocks there. The returned blocks hold the session open."""
    from kernels.tvm.compile import compile_model

    cm = compile_model(model, session.target, records=records, whole=False)
    return TvmBlocks.on_session(cm, session)


_COMPILED: dict[tuple[str, str], TvmBlocks] = {}


def compiled_blocks(model) -> TvmBlocks:  # noqa: ANN001
    """:func:`compile_blocks` for this CPU, once per model and process (the commands that compile and then time the
    blocks, ``validate`` and ``profile runtime-overheads``, share it)."""
    fp = model.fingerprint()
    key = (fp["architecture"], fp["weights"])
    if key not in _COMPILED:
        _COMPILED[key] = compile_blocks(model)[0]
    return _COMPILED[key]
