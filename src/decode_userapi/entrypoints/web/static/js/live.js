// Live updates. Where the service offers the job event stream (GET /jobs/events/stream, Server-Sent
// Events), one connection for the page's life tells the views that something changed, and they ask
// again at once (a revalidation with If-None-Match); polling goes on as the fallback, slower. Without
// the stream, the views poll every few seconds. The stream is read with fetch, not EventSource, so it
// carries the bearer token like every other call; it resumes after the last `id:` it saw.
//
// Listeners get `(jobId, message)`: the message is the event as the stream sent it, with `job`, the
// job as it is now (null once deleted), so a view can update without asking again. Health listeners
// hear when the stream connects or drops (the views then slow down or speed up their polling), and
// `<html data-live="stream|polling">` says which of the two the page relies on.

const RETRY_MS = 3000; // after a refused or failed connection (the server's `retry:` replaces it)
const RECONNECT_MS = 500; // after a connection that worked dropped: resume soon, from the last id

export class ChangeStream {
  constructor(api, available) {
    this.api = api;
    this.available = available;
    this.listeners = new Set();
    this.healthListeners = new Set();
    this.healthy = false;
    this.retryMs = RETRY_MS;
    this.lastId = null;
    this.started = false;
    this.controller = null;
    this.wakeUp = null;
    document.documentElement.dataset.live = "polling";
  }

  // Signing out ends the stream (it carries the old token); the next sign-in opens a new one.
  close() {
    if (this.controller) this.controller.abort();
    this.controller = null;
    this.lastId = null;
  }

  subscribe(listener) {
    this.listeners.add(listener);
    if (this.available && !this.started) {
      this.started = true;
      this.run();
    }
    return () => this.listeners.delete(listener);
  }

  // Signed in (again): connect now rather than at the end of the wait.
  wake() {
    if (this.wakeUp) this.wakeUp();
  }

  onHealth(listener) {
    this.healthListeners.add(listener);
  }

  setHealthy(healthy) {
    if (healthy === this.healthy) return;
    this.healthy = healthy;
    document.documentElement.dataset.live = healthy ? "stream" : "polling";
    for (const listener of this.healthListeners) listener(healthy);
  }

  notify(jobId, message) {
    for (const listener of this.listeners) listener(jobId, message);
  }

  async run() {
    for (;;) {
      let wait = this.retryMs;
      if (this.api.signedIn()) {
        try {
          await this.read();
        } catch {
          // dropped or refused (an expired token: the next call of the page asks to sign in again)
        }
        if (this.healthy) wait = RECONNECT_MS;
      }
      this.setHealthy(false);
      await new Promise((resolve) => {
        this.wakeUp = resolve;
        setTimeout(resolve, wait);
      });
      this.wakeUp = null;
    }
  }

  async read() {
    const headers = { Accept: "text/event-stream", ...this.api.authHeader() };
    if (this.lastId !== null) headers["Last-Event-ID"] = this.lastId;
    this.controller = new AbortController();
    const response = await fetch("/jobs/events/stream", { headers, cache: "no-store", signal: this.controller.signal });
    if (!response.ok || !response.body) {
      await response.text().catch(() => "");
      return;
    }
    this.setHealthy(true);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const retry = /^retry: ?(\d+)$/m.exec(block);
        if (retry) this.retryMs = Number(retry[1]);
        const id = /^id: ?(.*)$/m.exec(block);
        if (id) this.lastId = id[1];
        const event = /^event: ?(.*)$/m.exec(block);
        if (event && event[1] === "expired") return;
        const data = /^data: ?(.*)$/m.exec(block);
        if (data) {
          let message = null;
          try {
            message = JSON.parse(data[1]);
          } catch {
            // not JSON: still a change
          }
          this.notify(message ? message.job_id ?? null : null, message);
        }
      }
    }
  }
}
