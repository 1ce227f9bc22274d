"""The worker starts before the page's module graph (issue 16): the page's first script
(web/page/start.js, web/widget/start.js: no imports) makes it, and bridge.js adopts it with the
messages it sent meanwhile, in order; a worker started for another URL is ended, not used."""

from __future__ import annotations

from .conftest import Booted

# A stand-in for what start.js leaves on globalThis, then AgentClient.create for `workerUrl`.
ADOPT = """async ({ at, workerUrl }) => {
    const { AgentClient } = await import('./shared/bridge.js');
    const log = { posted: [], terminated: false };
    const worker = {
        postMessage: (m) => log.posted.push(m),
        terminate: () => { log.terminated = true; },
    };
    const url = new URL(at, location.href).href;
    const ev = (stage) => JSON.stringify({ v: 1, type: 'progress', id: null, stage });
    const early = { url, worker, messages: [ev('runtime'), ev('packages')], errors: [] };
    worker.onmessage = (e) => early.messages.push(e.data); // as start.js queues them
    globalThis[Symbol.for('wasmagent.earlyWorker')] = early;
    const client = await AgentClient.create({ workerUrl: new URL(workerUrl, location.href) });
    const adopted = client.worker === worker;
    // A message arriving after adoption but before the replay is kept after the earlier ones.
    if (adopted) worker.onmessage({ data: ev('ready') });
    if (adopted) await client.ready;
    const stages = client.bootLog.map((e) => e.stage);
    if (!adopted) client.terminate();
    return { adopted, stages, terminated: log.terminated,
             left: Symbol.for('wasmagent.earlyWorker') in globalThis };
}"""


def test_the_app_worker_is_started_by_the_first_script_and_adopted(app: Booted) -> None:
    workers = [w.url for w in app.page.workers if "/worker/worker.js" in w.url]
    assert len(workers) == 1, workers
    assert app.page.evaluate("Symbol.for('wasmagent.earlyWorker') in globalThis") is False
    log = app.page.evaluate("wasmagentClient.bootLog")
    assert log[0]["stage"] == "runtime"
    assert app.errors == []


def test_an_early_worker_for_the_same_url_is_adopted_with_its_messages_in_order(
        app: Booted) -> None:
    got = app.page.evaluate(ADOPT, {"at": "worker/none.js", "workerUrl": "worker/none.js"})
    assert got == {"adopted": True, "stages": ["runtime", "packages", "ready"],
                   "terminated": False, "left": False}


def test_an_early_worker_for_another_url_is_ended_and_not_used(app: Booted) -> None:
    # protocol.js: a module with no side effects, as the worker the bridge makes instead.
    got = app.page.evaluate(ADOPT, {"at": "worker/worker.js?kb=other",
                                    "workerUrl": "shared/protocol.js"})
    assert got == {"adopted": False, "stages": [], "terminated": True, "left": False}
