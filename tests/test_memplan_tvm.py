"""TVM's Relax planner, measured on a zoo model."""

import re

import pytest


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_tvm_planned_bytes_match_tvms_own_estimate():
    import torch
    import tvm
    from tvm import relax

    from kernels.memplan import graph_from_blockwise, plan_activation_memory
    from kernels.memplan import tvm_planner
    from kernels.zoo import build_model

    model = build_model("resnet18", input_size=64)
    mem = tvm_planner.tvm_activation_memory(model, (3, 64, 64))
    assert mem.input_bytes == 3 * 64 * 64 * 4 and mem.total_bytes == mem.planned_bytes + mem.input_bytes
    # The storages after StaticPlanBlockMemory hold at least the largest activation (the stem's output) ...
    graph, _ = graph_from_blockwise(model)
    result = plan_activation_memory(graph)
    assert max(mem.storages) >= result.largest_tensor_bytes
    # ... and what we count is what relax.analysis.estimate_memory_usage reports (in GB, 4 digits).
    ep = torch.export.export(model.eval(), (torch.zeros(1, 3, 64, 64),))
    from tvm.relax.frontend.torch import from_exported_program

    mod = from_exported_program(ep, unwrap_unit_return_tuple=True, keep_params_as_input=True)
    target = tvm.target.Target({"kind": "llvm"})
    from tvm.relax.backend import cpu_generic

    passes = [relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings()]
    passes += cpu_generic.library_dispatch_passes(target) + cpu_generic.legalize_passes(target)
    passes += [relax.transform.RewriteDataflowReshape(), relax.transform.ToNonDataflow(),
               relax.transform.RemovePurityChecking(), relax.transform.CallTIRRewrite(),
               relax.transform.StaticPlanBlockMemory()]
    with target:
        planned = tvm.transform.Sequential(passes)(mod)
    text = relax.analysis.estimate_memory_usage(planned)
    gb = float(re.search(r"With memory planning, there are \d+ constant-size memory allocation\(s\) with total size "
                         r"([0-9.e-]+) GB", text).group(1))
    assert mem.planned_bytes / 2**30 == pytest.approx(gb, rel=1e-3)
    assert mem.total_bytes > result.overlap_bytes
