// The widget frame's first page. Unlike embed.html (the agent), any site may frame it: it checks
// the host page (embed-link.js) and either shows a refused site why, in the frame, or moves on
// to embed.html, which the browser itself refuses to render outside the allowlist.
import { connectHost } from "./embed-link.js";

const { port } = await connectHost();
port.postMessage({ type: "hello", page: "gate" });
location.replace("embed.html");
