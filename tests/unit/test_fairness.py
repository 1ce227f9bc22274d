"""One client's bulk work cannot starve another client's questions."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from wasmagent.ports import Tensor

from .test_cancellation import QUESTION, Model, Rig, seeded, settle


class Recording(Model):
    """The model double, noting how many texts each embedding batch held, in run order."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def run(self, model: str, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if model != "intent":
            self.batches.append(feeds["input_ids"].shape[0])
        return await super().run(model, feeds)


async def test_a_question_overtakes_another_clients_bulk_embedding() -> None:
    model = Recording()
    model.gate = asyncio.Event()
    rig = Rig(await seeded(), model=model)
    assert rig.service.embedder is not None
    bulk, asker = rig.client(), rig.client()
    texts = [f"passage number {n} about ferries and museums" for n in range(128)]
    bulk.submit({"v": 1, "type": "embed", "id": "bulk", "texts": texts})
    await settle(lambda: model.batches == [32], "the first bulk batch running")
    asker.submit({"v": 1, "type": "ask", "id": "q", "text": QUESTION})
    await settle(lambda: rig.service.embedder.batcher.pending == 97, "the question queued")
    model.gate.set()
    await settle(lambda: bool(rig.of("q")) and rig.of("q")[-1]["type"] == "done", "the answer")
    assert model.batches[:2] == [32, 1], model.batches  # next after the running batch
    await settle(lambda: bool(rig.of("bulk")) and rig.of("bulk")[-1]["type"] == "done",
                 "the bulk result")
    assert sum(model.batches) == 129
    await rig.service.aclose()
