"""The Inspect task that scripts/check-statistics runs twice, as two institutes would:

    inspect eval scripts/check_statistics_task.py@stats_pair --model mockllm/model \
        -T seed=1 -T drop=13,77

200 samples (`s000` … `s199`, less those `drop` names), 2 epochs, on Inspect's mock
model (no network). The scores do not read the model's answer: each is a deterministic
pseudo-random value of the sample, the epoch and `seed`, part shared by every seed (so
that two runs agree more than by chance, as two runs of one model do) and part the
seed's own, and each carries its sample's `topic` (five topics of uneven sizes) in its
metadata, the field a comparison clusters by:

- `quality`, a float in [0, 1) (numeric statistics, clustered standard errors);
- `verdict`, `C` or `I` (agreement, Cohen's kappa, exact McNemar);
- `grade`, an integer 1 to 5 (Krippendorff's alpha at every level).
"""

import hashlib

from inspect_ai import Epochs, Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model._providers import mockllm as _mockllm
from inspect_ai.scorer import Score, Target, accuracy, mean, scorer, stderr
from inspect_ai.solver import TaskState, generate


async def _count_tokens(self, text):
    return max(1, len(text) // 4)


# The mock model counts tokens with a tokenizer it would download: count offline.
_mockllm.MockLLM.count_text_tokens = _count_tokens

SAMPLES = 200
EPOCHS = 2
# Uneven on purpose: a clustered standard error differs from the paired one only when
# clusters differ, and equal sizes would hide a mistake in weighting them.
TOPICS = [("algebra", 0.40), ("geometry", 0.25), ("probability", 0.18), ("logic", 0.12), ("number", 0.05)]


def uniform(*key: object) -> float:
    """A float in [0, 1), the same on every machine and Python (unlike `hash`)."""
    digest = hashlib.sha256(":".join(map(str, key)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def topic_of(sample_id: str) -> str:
    u, edge = uniform("topic", sample_id), 0.0
    for name, share in TOPICS:
        edge += share
        if u < edge:
            return name
    return TOPICS[-1][0]


def mixed(name: str, state: TaskState, seed: int) -> float:
    """The sample's share (with its topic's), and the seed's and epoch's own."""
    sample_id = str(state.sample_id)
    topic = [t for t, _ in TOPICS].index(topic_of(sample_id))
    shared = 0.5 * uniform(name, sample_id) + 0.1 * topic / len(TOPICS)
    return shared + 0.4 * uniform(name, sample_id, state.epoch, seed)


def scored(value: object, state: TaskState) -> Score:
    return Score(value=value, metadata={"topic": topic_of(str(state.sample_id))})


@scorer(metrics=[mean(), stderr(cluster="topic")])
def quality(seed: int):
    async def score(state: TaskState, target: Target) -> Score:
        return scored(mixed("quality", state, seed), state)

    return score


@scorer(metrics=[accuracy(), stderr()])
def verdict(seed: int):
    async def score(state: TaskState, target: Target) -> Score:
        return scored("C" if mixed("verdict", state, seed) > 0.5 else "I", state)

    return score


@scorer(metrics=[mean(), stderr()])
def grade(seed: int):
    async def score(state: TaskState, target: Target) -> Score:
        return scored(1 + min(4, int(mixed("grade", state, seed) * 5)), state)

    return score


@task
def stats_pair(seed: int = 1, drop: list[int] | int | None = None) -> Task:
    # `-T drop=13,77` reaches the task as a list of strings, `-T drop=13` as a number.
    dropped = {int(n) for n in (drop if isinstance(drop, list) else [] if drop is None else [drop])}
    samples = [
        Sample(id=f"s{i:03d}", input=f"Item {i}: say anything.", target="", metadata={"topic": topic_of(f"s{i:03d}")})
        for i in range(SAMPLES)
        if i not in dropped
    ]
    return Task(
        name="stats_pair",
        dataset=MemoryDataset(samples, name="stats_pair-data"),
        solver=[generate()],
        scorer=[quality(seed), verdict(seed), grade(seed)],
        # The reducers the service offers that Inspect has (it has no `min`): the log holds
        # their reductions.
        epochs=Epochs(EPOCHS, ["mean", "median", "max"]),
    )
