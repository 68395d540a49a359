"""Benches for the GPU machine: `python -m bench gpu.NAME`; bench/gpu/run.sh runs them there in one call.
Each also runs on the CPU in a tiny config (tests/test_bench.py), where the CUDA parts run eagerly."""
