"""Image budgets stop at their exact value (issue #19 item 6, runner side): the last step takes fewer prompts
(GRPO, multi-reward: whole groups; DiffusionOPD: fewer prompts per task in its last round), decided once per step
from the ledger, so a budget that is a multiple of one prompt's images is met exactly (the default GRPO job
overshot 2,000 by 16 images before), and any other overshoots by less than one prompt's images."""
import pytest
from tiny_world import make_tiny_world

from opd_bench.config import build_config
from opd_bench.methods import METHODS
from opd_bench.runner import Runner, last_step_prompts


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_tiny_world(tmp_path_factory.mktemp("world"))


def test_last_step_prompts():
    assert last_step_prompts(4, 8, 2000 - 1984) == 2          # GRPO's default job: 16 images left = 2 groups
    assert last_step_prompts(4, 8, 500) == 4 and last_step_prompts(4, 8, 3) == 1
    assert last_step_prompts(4, 4, 6) == 2                     # 6 images left, 4 per prompt: overshoot 2 < 4


@pytest.mark.parametrize("method, budget, extra, spent", [
    ("grpo", 20, {}, 20), ("grpo", 18, {}, 20),
    ("multi-reward", 20, {"multi_reward.mode": "weighted_sum"}, 20),
    ("opd", 18, {}, 18),
])
def test_image_budgets_stop_exactly(world, tmp_path, method, budget, extra, spent):
    tasks = ["brightness"] if method == "grpo" else ["brightness", "darkness"]
    over = [f"method={method}", f"tasks={','.join(tasks)}", f"model.checkpoint={world / 'base'}", "sampler.steps=3",
            "sampler.guidance=2.0", "train.prompts_per_step=2", "grpo.group_size=4", "eval.steps=2",
            "eval.prompts_per_task=1", "eval.bootstrap=50", "eval.curve_every=0", f"budget.value={budget}"]
    over += [f"opd.teachers.{t}={world / 'teacher'}" for t in tasks] + [f"{k}={v}" for k, v in extra.items()]
    cfg = build_config({}, over)
    s = Runner(cfg, tmp_path / "r", METHODS[method](), tasks, show_progress=False, log_tensorboard=False).run()
    assert s["ledger"]["spent"]["train"]["images"] == spent
