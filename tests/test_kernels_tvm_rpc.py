"""Profiling through TVM's RPC server (a phone stands in as a loopback server in its own process group)."""

from __future__ import annotations


import pytest

from engram.errors import EngramError
from conftest import free_port
from kernels.tvm.rpc import parse_device


@pytest.mark.parametrize("text,host,port,key", [
    ("rpc://127.0.0.1:9090", "127.0.0.1", 9090, None),
    ("rpc://phone.local:9191/android", "phone.local", 9191, "android"),
    ("rpc://[::1]:9090/", "::1", 9090, None),
])
def test_parse_device(text, host, port, key):
    a = parse_device(text)
    assert (a.kind, a.host, a.port, a.key) == ("rpc", host, port, key)
    assert parse_device(a.url) == a


@pytest.mark.parametrize("text", ["rpc://host", "rpc://host:99999", "http://h:1", "phone", "rpc://:90", ""])
def test_parse_device_rejects(text):
    with pytest.raises(EngramError, match="rpc://HOST:PORT|out of range"):
        parse_device(text)


@pytest.mark.slow
def test_rpc_profile_over_loopback_is_valid(tmp_path, rpc_server):
    from kernels.reference.store import load_reference
    from kernels.tvm.timing import TimingConfig
    from profiles.format import read_profile, write_profile
    from profiles.profiler import profile_model

    ref = load_reference()
    # No attempt can be steady enough for a CV bound of 0: the rounds are taken twice and the steadier kept.
    cfg = TimingConfig(warmup=1, repeats=3, sample_ms=0.5, lookup_repeats=2, lookup_sample_ms=0.2, cv_warn=0.0, attempts=2)
    said: list[str] = []
    prof = profile_model(ref.model, rpc_server, config=cfg, encoders=ref.encoders, progress=False, warn=said.append)
    out = write_profile(prof, tmp_path / "rpc.json")
    p = read_profile(out, model=ref.model)
    assert p.device.kind == "rpc" and p.device.address == rpc_server
    assert set(p.block_sources().values()) == {"measured"}
    assert p.model_latency_ms() > 0 and all(p.latency_ms(b) > 0 for b in p.block_names)
    assert p.lookup is not None and p.lookup.source == "measured"
    assert p.lookup_ms("b3", 1024) > 0
    assert p.memory.planned_activation_bytes <= p.memory.pingpong_activation_bytes
    # Over RPC the host's clock would time the network: blocks are timed on the device, each on its own.
    assert not p.blocks_in_context and p.measurement["block_timing"] == "isolated"
    assert all("isolated" in p.stats(b).note for b in p.block_names)
    tries = p.measurement["attempts"]
    assert len(tries["worst_cv"]) == 2 and tries["worst_cv"][tries["kept"]] == min(tries["worst_cv"])
    assert p.measurement["max_attempts"] == 2
    assert any(m.startswith("attempt 1: worst variation") for m in said)
    # What is recorded is the kept attempt's: no block varies more than the worst CV it was kept for.
    assert max(p.stats(b).cv for b in p.block_names) <= tries["worst_cv"][tries["kept"]] + 1e-6


def test_rpc_unreachable_is_one_clear_error():
    from kernels.tvm.rpc import open_session
    from kernels.tvm.targets import local_target

    port = free_port()
    with pytest.raises(EngramError, match=f"cannot connect to rpc://127.0.0.1:{port}"):
        open_session(f"rpc://127.0.0.1:{port}", local_target())
