"""TVM 0.27 compilation of blockwise models: one Relax module per block (and one for the whole model),
MetaSchedule tuning with records kept in the repository, timing locally or over TVM's RPC, and the
semantic-lookup kernel of each exit point.

Modules (imported on use; all of them import ``tvm``):

- :mod:`kernels.tvm.targets`: the local CPU (its real ``mcpu``), aarch64 phones, Adreno OpenCL.
- :mod:`kernels.tvm.export`: ``torch.export`` -> Relax, BatchNorm folded into the convolutions.
- :mod:`kernels.tvm.records`: where the shipped tuning records live and how they are picked up.
- :mod:`kernels.tvm.compile`: compile a model per block and whole, applying the records.
- :mod:`kernels.tvm.storage`: CPU executables with every planned storage one size (warm pool buffers per block).
- :mod:`kernels.tvm.tune`: one MetaSchedule run over every task of a model (``python -m kernels.tvm.tune``).
- :mod:`kernels.tvm.lookup`: the semantic lookup (encode + cosine search against ``n`` cached entries).
- :mod:`kernels.tvm.timing`: repeated timing with trimming and statistics.
- :mod:`kernels.tvm.rpc`: a device reached through ``rpc://HOST:PORT[/KEY]``.
- :mod:`kernels.tvm.measure`: blocks, whole model and lookup timed interleaved on a device.
- :mod:`kernels.tvm.builder`: MetaSchedule's candidate builder without the 30-second import trap.
- :mod:`kernels.tvm.counters`: RAPL energy counters where the machine has one.
"""
