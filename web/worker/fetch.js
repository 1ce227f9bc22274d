// Fetching the app's own files the way the build published them: each file the build listed in
// boot-manifest.json is asked for as `path?v=VERSION` (the static server lets browsers keep those
// for good, and a new build changes the URL instead of leaving a stale copy in the HTTP cache),
// and bytes are read into one buffer sized by the manifest, reporting each chunk to `onChunk`.
// Shared by the agent's own worker (worker.js) and by Python on someone else's Pyodide (host.js).

export function createFetch(base, { onChunk = () => {} } = {}) {
  const manifest = fetch(new URL("boot-manifest.json", base))
    .then((r) => (r.ok ? r.json() : {}))
    .catch(() => ({}));

  // A file's path in the manifest: relative to the app, without the ?v= version.
  const relative = (url) => {
    const u = new URL(url, base);
    return (u.origin + u.pathname).slice(base.href.length);
  };

  async function versioned(url) {
    const { versions = {} } = await manifest;
    const u = new URL(url, base);
    const version = versions[relative(u.href)];
    if (version && !u.search) u.search = `v=${version}`;
    return u;
  }

  async function fetchBytes(url) {
    const response = await fetch(await versioned(url));
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    if (!response.body) return new Uint8Array(await response.arrayBuffer());
    // Read into place, sized by the manifest (Content-Length counts compressed bytes when the
    // server gzipped the body), growing only if the file is not the one the manifest describes.
    const { files = {} } = await manifest;
    let bytes = new Uint8Array(files[relative(response.url)] || Number(response.headers.get("Content-Length")) || 0);
    let at = 0;
    for (const reader = response.body.getReader(); ; ) {
      const { done, value } = await reader.read();
      if (done) break;
      if (at + value.byteLength > bytes.length) {
        const grown = new Uint8Array(Math.max(2 * bytes.length, at + value.byteLength));
        grown.set(bytes.subarray(0, at));
        bytes = grown;
      }
      bytes.set(value, at);
      at += value.byteLength;
      onChunk(response.url, at);
    }
    return at === bytes.length ? bytes : bytes.slice(0, at);
  }

  async function fetchText(url) {
    const response = await fetch(await versioned(url));
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.text();
  }

  return { manifest, relative, versioned, fetchBytes, fetchText };
}
