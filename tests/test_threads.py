"""Thread settings (opd_bench/threads.py): passive OpenMP waiting and deliberate thread counts."""
import os
import subprocess
import sys

from opd_bench.threads import configure_env


def test_passive_waiting_unless_the_user_chose_otherwise():
    env = {}
    assert configure_env(env) is None
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["KMP_BLOCKTIME"] == "0"
    env = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3"}
    assert configure_env(env) == 3
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"


def test_opd_bench_threads_sets_the_openmp_and_mkl_counts():
    env = {"OPD_BENCH_THREADS": "1", "OMP_NUM_THREADS": "8"}
    assert configure_env(env) == 1
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert configure_env({"OPD_BENCH_THREADS": "zero"}) is None


def test_importing_the_package_before_torch_gives_torch_that_many_threads():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["OPD_BENCH_THREADS"] = "1"
    code = "import opd_bench, os, torch; print(torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "PASSIVE"]
