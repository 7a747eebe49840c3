"""One-off tools that build the embedded world's released assets: the prompt sets (:mod:`.make_prompts`,
:mod:`.taste_prompts`), the reward models' data and training (:mod:`.reward_data`, :mod:`.train_rewards`)
and the base model's pretraining (:mod:`.pretrain`). Reached through ``opd-bench world ...``; nothing at run
time imports them (docs/architecture.md)."""
