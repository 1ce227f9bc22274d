"""Installing the local model on a full quota: a clear message, no half-written model, and the
app keeps answering with cited extracts.

The quota is Chromium's own, narrowed with DevTools' `Storage.overrideQuotaForOrigin` (over a
CDP session): the app's code runs unchanged against Cache Storage's real limit. Chromium's
`navigator.storage.estimate()` does not reveal that limit (it reports usage + 10 GiB whatever
the quota, measured here), so the app's early check cannot fire in Chromium: the download runs
and storing it is refused. Browsers whose estimate is real refuse before downloading; both
messages are accepted, and either way nothing may be left in Cache Storage.
"""

from __future__ import annotations

import re

from playwright.sync_api import Browser, expect

from .conftest import boot
from .test_local_model import MODEL_TIMEOUT_MS

MB = 1 << 20
REFUSED = re.compile(r"not enough storage for the model|storage is full: the 94 MB model was not stored")

STORED = """async () => {
  const found = [];
  for (const name of await caches.keys()) {
    for (const request of await (await caches.open(name)).keys()) {
      if (request.url.endsWith('.gguf')) found.push(`${name}: ${request.url}`);
    }
  }
  return found;
}"""

ASK = """async (text) => {
  const done = await wasmagentClient.request('ask', {text, mode: 'auto'});
  return done.answer;
}"""


def test_a_full_quota_leaves_no_model_and_answers_stay_extracts(
        browser: Browser, app_url: str) -> None:
    booted = boot(browser, app_url)
    page = booted.page
    try:
        # The service worker's precache is written after boot: measure once it is done.
        page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        cdp = booted.context.new_cdp_session(page)
        origin = app_url.rstrip("/")

        def cache_usage() -> int:
            found = cdp.send("Storage.getUsageAndQuota", {"origin": origin})
            return sum(int(b["usage"]) for b in found["usageBreakdown"]
                       if b["storageType"] == "cache_storage")

        usage = cdp.send("Storage.getUsageAndQuota", {"origin": origin})["usage"]
        cached = cache_usage()
        # 20 MB to spare: the app works, a 94 MB model does not fit.
        cdp.send("Storage.overrideQuotaForOrigin",
                 {"origin": origin, "quotaSize": usage + 20 * MB})

        page.click("#toggle-kb")
        page.click("#model-settings summary")
        install = page.locator("#model-install")
        install.click()
        message = page.locator("#model-message")
        expect(message).to_have_text(REFUSED, timeout=MODEL_TIMEOUT_MS)
        expect(message).to_contain_text("Answers stay cited extracts")
        expect(install).to_be_visible()
        expect(page.locator("#model-remove")).to_be_hidden()
        expect(page.locator("#model-download")).to_be_hidden()
        assert page.evaluate("document.body.dataset.localModel") == "absent"
        assert page.evaluate(STORED) == [], "no model, whole or partial, in Cache Storage"
        # (The service worker may cache a few small files meanwhile: ~0.4 MB measured.)
        assert cache_usage() - cached < 10 * MB, "none of the model's 94 MB was kept"

        answer = page.evaluate(ASK, "Which embedding model does wasmagent use?")
        assert answer["route"] not in ("llm", "local_llm"), "no model: a cited extract"
        assert answer["text"].strip()
        assert answer["citations"]
        assert booted.errors == []
    finally:
        booted.context.close()
