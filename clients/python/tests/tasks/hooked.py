"""The task the live tests run with `inspect eval` on Inspect's mock model: 12 questions,
scored by `includes` and `match`. The mock model answers "Default output from
mockllm/model" to everything, so the targets that are words of that answer are scored
right and the others wrong: the metrics are neither all 0 nor all 1."""

from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model._providers import mockllm
from inspect_ai.scorer import includes, match
from inspect_ai.solver import generate


# The mock model counts tokens with a tokenizer it would download: count offline.
async def _count_text_tokens(self: Any, text: str) -> int:
    return max(1, len(text) // 4)


mockllm.MockLLM.count_text_tokens = _count_text_tokens  # type: ignore[method-assign]

TARGETS = [
    "Default",
    "output",
    "mockllm",
    "cheese",
    "from",
    "model",
    "42",
    "Default output",
    "x",
    "y",
    "z",
    "from mockllm",
]


@task
def hooked() -> Task:
    return Task(
        dataset=MemoryDataset(
            [Sample(id=f"s{i:02d}", input=f"Say something ({i})", target=t) for i, t in enumerate(TARGETS)],
            name="hooked-data",
        ),
        solver=[generate()],
        scorer=[includes(), match(location="begin")],
    )
