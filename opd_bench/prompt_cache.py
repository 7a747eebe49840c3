"""A bounded two-tier cache of prompt encodings (``model.prompt_cache_size`` / ``model.prompt_cache_cpu_size``).

A frozen text encoder's output for a prompt never changes, so the backbones cache it. Unbounded and on the
accelerator, that is ~2.6 MiB per prompt for SD3.5 (T5 at 256 tokens): ~65 GiB for PickScore's 25,432 training
prompts. Here the device tier holds at most ``device_entries`` prompts, least recently used evicted first; an
evicted encoding moves to a CPU tier of at most ``cpu_entries`` (again LRU), from where a later hit moves it
back; beyond both it is dropped and encoded again when next needed (same weights, same result). Entries are
exact copies, so a bounded cache changes no result, only memory and encoder time.

The empty prompt (CFG's unconditional branch) is used by every batch and is pinned on the device tier.
``device_entries`` 0 = unbounded (every encoding stays on the device: the original behaviour).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Iterator, Tuple

import torch

Entry = Tuple[torch.Tensor, ...]
PINNED = ("",)


class PromptCache:
    def __init__(self, device_entries: int = 0, cpu_entries: int = 0):
        self.device_entries, self.cpu_entries = int(device_entries), int(cpu_entries)
        self.device: "OrderedDict[str, Entry]" = OrderedDict()
        self.cpu: "OrderedDict[str, Tuple[Entry, torch.device]]" = OrderedDict()
        self.stats: Dict[str, int] = {"hits": 0, "cpu_hits": 0, "misses": 0, "evictions": 0, "dropped": 0}

    def __contains__(self, prompt: str) -> bool:
        return prompt in self.device or prompt in self.cpu

    def __iter__(self) -> Iterator[str]:
        yield from self.device
        yield from self.cpu

    def __len__(self) -> int:
        return len(self.device) + len(self.cpu)

    def __getitem__(self, prompt: str) -> Entry:
        if prompt in self.device:
            self.stats["hits"] += 1
            self.device.move_to_end(prompt)
            return self.device[prompt]
        entry, dev = self.cpu.pop(prompt)   # KeyError when absent, like a dict
        self.stats["cpu_hits"] += 1
        self[prompt] = tuple(t.to(dev, non_blocking=True) for t in entry)
        return self.device[prompt]

    def __setitem__(self, prompt: str, entry: Entry) -> None:
        self.device[prompt] = entry
        self.device.move_to_end(prompt)
        if self.device_entries > 0:
            self._evict()

    def _evict(self) -> None:
        over = len(self.device) - self.device_entries - sum(p in self.device for p in PINNED)
        for prompt in [p for p in self.device if p not in PINNED][:max(0, over)]:
            entry = self.device.pop(prompt)
            self.stats["evictions"] += 1
            if self.cpu_entries > 0:
                self.cpu[prompt] = (tuple(t.to("cpu") for t in entry), entry[0].device)
                while len(self.cpu) > self.cpu_entries:
                    self.cpu.popitem(last=False)
                    self.stats["dropped"] += 1
            else:
                self.stats["dropped"] += 1

    def note_miss(self, n: int = 1) -> None:
        self.stats["misses"] += n

    def clear(self) -> None:
        self.device.clear()
        self.cpu.clear()
