// The widget frame's first page. Unlike embed.html (the agent), any site may frame it: it checks
// the host page (embed-link.js) and either shows a refused site why, in the frame, or moves on
// to embed.html, which the browser itself refuses to render outside the allowlist.
import { connectHost } from "./embed-link.js";
// embed-link.js's imports, listed here too so they are fetched with it rather than a level later
// each: this frame has no service worker, every module costs a revalidation round trip.
import "../worker/server-link.js";
import "../shared/protocol.js";

const { port, config } = await connectHost();
port.postMessage({ type: "hello", page: "gate" });
// The worker's options ride along, so embed.html starts it before its own handshake (start.js).
location.replace(`embed.html#${new URLSearchParams({ kb: config.kb, model: config.model })}`);
