"""The on-device runtime: runs a model with a policy tuned in simulation, and the policy bundle it reads.

Data flows ``simulator -> bundle -> runtime``: ``run_sim.py export`` writes a versioned, hash-checked bundle
(:mod:`runtime.bundle`) holding the policy as the simulator ran it, the semantic encoders of its exit points,
the model fingerprint, the profile it was tuned for and the simulator's predicted metrics; the runtime
(:mod:`runtime.engine`) loads it and runs frames block by block with TVM-compiled executables, exiting early
through the semantic cache exactly as the simulator's SMTM engine decides.

Modules:

- :mod:`runtime.bundle`: the bundle format (``bundle.json`` + ``encoders.safetensors``), writer and reader;
- :mod:`runtime.encoders`: numpy-only semantic encoders (pool, centre, project, normalise) and their reader;
- :mod:`runtime.smtm`: the per-frame semantic-cache decisions (numpy only), mirroring ``simulator.smtm``;
- :mod:`runtime.blocks`: per-block TVM executables (compiled here, or loaded from exported libraries);
- :mod:`runtime.engine`: the per-frame loop, its timings and its log;
- :mod:`runtime.frames`: frames of a label trace rendered with the reference workload (tests, fidelity runs);
- :mod:`runtime.cli`: ``run_sim.py export``.

The per-frame path uses numpy and the TVM runtime only (no torch, simpy or pydantic calls; pydantic validates
the policy once, when a bundle is read).
"""
