/* Keeps the panel's own files so that a reload while CouchDB is unreachable still opens the panel, which
 * then says so and shows the last figures it read. The files come from the network whenever it answers
 * (a deployed change shows at the next load); the figures never pass through here. */
const CACHE = "analytics-panel-shell";
const SHELL = ["index.html", "panel.css", "charts.js", "panel.js", "favicon.svg"];
const SCOPE = new URL(self.registration.scope).pathname;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !url.pathname.startsWith(SCOPE)) {
    return;
  }
  event.respondWith(fetch(event.request).then((response) => {
    if (response.ok) {
      const copy = response.clone();
      event.waitUntil(caches.open(CACHE).then((cache) => cache.put(event.request, copy)));
    }
    return response;
  }, () => caches.match(event.request, { ignoreSearch: true }).then((cached) => cached || Response.error())));
});
