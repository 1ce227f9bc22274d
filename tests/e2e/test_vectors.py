"""Vector search in the browser (web/worker/vectors.js): the SIMD kernel, and the plain JS path
it falls back to, find the same nearest rows as brute force."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Booted

# Each call imports its own instance of the module (a distinct query string), so the kernel one
# call loaded is not seen by the next. Rows arrive in growing batches (1, 3, 9, ...): the space's
# memory grows while it fills, as it does when a knowledge base loads.
SEARCH = """async ({instance, kernel, dim, count}) => {
    const vectors = await import(`/worker/vectors.js?instance=${instance}`);
    if (kernel) await vectors.useKernel(fetch(kernel));
    let seed = 12345;
    const next = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;
    const rows = Float32Array.from({ length: dim * count }, next);
    for (let at = 0, n = 1; at < count; at += n, n *= 3) {
        vectors.add("s", dim, rows.subarray(at * dim, Math.min(count, at + n) * dim));
    }
    const query = Float32Array.from({ length: dim }, next);
    const found = vectors.search("s", query, 10);
    const exact = [];
    for (let i = 0; i < count; i++) {
        let dot = 0;
        for (let j = 0; j < dim; j++) dot += rows[i * dim + j] * query[j];
        exact.push([i, dot]);
    }
    exact.sort((a, b) => b[1] - a[1]);
    return { engine: vectors.engine(), found, exact: exact.slice(0, 10),
             empty: vectors.search("nothing", query, 10) };
}"""

KERNELS = {"wasm-simd": "/worker/scores.wasm", "js": None, "js after a failed load": "/nope.wasm"}


@pytest.mark.parametrize("dim", [384, 5])
@pytest.mark.parametrize("path", list(KERNELS))
def test_search_finds_the_nearest_rows(app: Booted, path: str, dim: int) -> None:
    got: dict[str, Any] = app.page.evaluate(SEARCH, {
        "instance": f"{path}-{dim}", "kernel": KERNELS[path], "dim": dim, "count": 3000})
    assert got["engine"]["kernel"] == path.split()[0]
    assert (got["engine"]["error"] is not None) == ("failed" in path), got["engine"]
    assert [i for i, _ in got["found"]] == [i for i, _ in got["exact"]]
    # float32 sums in another order than the float64 reference: a few ulps apart, never more
    for (_, score), (_, exact) in zip(got["found"], got["exact"], strict=True):
        assert score == pytest.approx(exact, rel=1e-4, abs=1e-5)
    assert got["empty"] == []


def test_the_app_searches_with_the_kernel(app: Booted) -> None:
    status = app.page.evaluate("wasmagentClient.status()")
    assert status["vector_search"] == "wasm-simd", status
