"""The accelerate launch files of the README's multi-GPU section load with accelerate's own config reader and
describe what their names say."""
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.utils import DistributedType

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, kind, processes, machines", [
    ("1gpu", DistributedType.NO, 1, 1), ("8gpu", DistributedType.MULTI_GPU, 8, 1),
    ("2x8gpu", DistributedType.MULTI_GPU, 16, 2)])
def test_accelerate_configs(name, kind, processes, machines):
    path = ROOT / "configs" / "accelerate" / f"{name}.yaml"
    c = ClusterConfig.from_yaml_file(str(path))
    assert (c.distributed_type, c.num_processes, c.num_machines) == (kind, processes, machines)
    assert c.mixed_precision == "no" and not c.use_cpu   # precision comes from the run config's model.dtype
    assert f"configs/accelerate/{name}.yaml" in (ROOT / "README.md").read_text()
