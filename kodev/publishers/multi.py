"""Publishers run in order, like tee(1); the last reference named wins (ko's multi.go)."""

from __future__ import annotations

from collections.abc import Sequence

from kodev.publishers.api import Published, Publisher


class MultiPublisher:
    def __init__(self, *publishers: Publisher) -> None:
        self.publishers = publishers

    def publish(self, results: Sequence[Published]) -> list[str]:
        """Each publisher sees the references named so far (the refs file writes them)."""
        for publisher in self.publishers:
            references = publisher.publish(results)
            if references is not None:
                for result, reference in zip(results, references, strict=True):
                    result.reference = reference
        return [result.reference for result in results]
