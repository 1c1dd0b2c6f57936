// Jobs: the table (filters, paging, live), one job's page, and the start-a-job form generated from
// the application catalog.
//
// Live updates go through a `Watch`: it polls with If-None-Match (a 304 without body while nothing
// changed). Where the service has the job event stream (live.js), a message that carries the job
// updates the view from the message alone (no request), other changes make it ask at once, and
// polling slows to a safety net while the stream is connected.

import { ApiError } from "./api.js";
import { ask, badge, el, formatDate, say } from "./ui.js";

const POLL_MS = 1500;
const POLL_WITH_STREAM_MS = 20000; // a safety net while the event stream is connected
const PAGE = 20;

// Calls `onChange(body, response)` each time the answer at `path()` changes; polls while started.
// A stream message about a job it `concerns` is offered to `apply(message)` first: true when the
// view took it in as it is, else the watch asks again.
class Watch {
  constructor(api, path, onChange, stream = null, concerns = () => true, apply = () => false) {
    this.api = api;
    this.stream = stream;
    if (stream) {
      stream.subscribe((jobId, message) => {
        if (this.running && concerns(jobId) && !(message && message.job && apply(message))) this.refresh();
      });
      stream.onHealth(() => this.reschedule());
    }
    this.path = path;
    this.onChange = onChange;
    this.etag = null;
    this.timer = null;
    this.running = false;
    this.generation = 0; // one polling loop at a time: a restart leaves the older one to end
  }

  start() {
    this.stop();
    this.running = true;
    this.etag = null;
    this.tick();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
  }

  async tick() {
    const generation = ++this.generation;
    const path = this.path();
    this.busy = true;
    try {
      const headers = this.etag ? { "If-None-Match": this.etag } : {};
      const response = await this.api.request("GET", path, { raw: true, headers });
      const text = await response.text(); // read whole even when stale: an unread body is cancelled
      if (!this.running || generation !== this.generation) return;
      if (response.status !== 304) {
        this.etag = response.headers.get("ETag");
        await this.onChange(JSON.parse(text), response);
      }
    } catch (error) {
      if (!this.running || generation !== this.generation) return;
      if (error instanceof ApiError && error.status === 404) {
        this.stop();
        await this.onChange(null, null);
        return;
      }
      say(`Could not refresh: ${error.message}`, true);
    } finally {
      if (generation === this.generation) this.busy = false;
    }
    if (this.running && generation === this.generation) this.schedule();
  }

  schedule() {
    clearTimeout(this.timer);
    const wait = this.stream && this.stream.healthy ? POLL_WITH_STREAM_MS : POLL_MS;
    this.timer = setTimeout(() => this.tick(), wait);
  }

  // The stream connected (poll seldom from now) or dropped (poll often until it is back).
  reschedule() {
    if (this.running && !this.busy) this.schedule();
  }

  refresh() {
    this.etag = null;
    clearTimeout(this.timer);
    if (this.running) this.tick();
  }
}

export class JobsTable {
  constructor(api, features, stream) {
    this.api = api;
    this.features = features;
    this.offset = 0;
    this.total = 0;
    this.filters = { status: "", name: "", application: "", created_after: "" };
    this.applicationsLoaded = false;
    this.body = document.getElementById("jobs-body");
    this.watch = new Watch(api, () => this.query(), (jobs, response) => this.render(jobs, response), stream,
      () => true, (message) => this.apply(message));
    document.getElementById("job-filters").addEventListener("submit", (event) => {
      event.preventDefault();
      const after = document.getElementById("filter-after").value; // a local date: from its midnight
      this.filters = {
        status: document.getElementById("filter-status").value,
        name: document.getElementById("filter-name").value.trim(),
        application: document.getElementById("filter-application").value,
        created_after: after ? new Date(`${after}T00:00`).toISOString() : "",
      };
      this.offset = 0;
      this.watch.refresh();
    });
    if (features.cancel) document.getElementById("filter-status").append(el("option", { text: "canceled" }));
    document.getElementById("jobs-prev").addEventListener("click", () => this.page(-PAGE));
    document.getElementById("jobs-next").addEventListener("click", () => this.page(PAGE));
  }

  query() {
    const params = new URLSearchParams({ offset: this.offset, limit: PAGE });
    if (this.filters.status) params.set("status", this.filters.status);
    for (const key of ["name", "application", "created_after"]) if (this.filters[key]) params.set(key, this.filters[key]);
    return `/jobs?${params}`;
  }

  page(delta) {
    this.offset = Math.max(0, this.offset + delta);
    this.watch.refresh();
  }

  // A stream message about a job on this page of the table whose row stays (its status still
  // matches the filter): its badge changes in place. Anything else (a new or deleted job, a job that
  // leaves the filter) asks again.
  apply(message) {
    const job = message.job;
    const row = this.body.querySelector(`tr[data-job="${job.id}"]`);
    if (!row || (this.filters.status && this.filters.status !== job.status)) return false;
    row.querySelector(".badge").replaceWith(badge(job.status));
    return true;
  }

  render(jobs, response) {
    this.total = Number(response && response.headers.get("X-Total-Count")) || 0;
    const rows = (jobs || []).map((job) =>
      el(
        "tr",
        { "data-job": job.id },
        el("td", { text: String(job.id) }),
        el("td", {}, el("a", { href: `#/jobs/${job.id}`, text: job.job_name })),
        el("td", { text: `${job.application.application} ${job.application.version} ${job.application.entrypoint}` }),
        el("td", {}, badge(job.status)),
        el("td", { text: formatDate(job.date_created) }),
      ),
    );
    const filtered = Object.values(this.filters).some(Boolean);
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "5", text: filtered ? "No job matches the filters." : "No jobs yet." })));
    this.body.replaceChildren(...rows);
    const last = Math.min(this.offset + PAGE, this.total);
    document.getElementById("jobs-range").textContent = this.total
      ? `${this.offset + 1} to ${last} of ${this.total}`
      : "";
    document.getElementById("jobs-prev").disabled = this.offset === 0;
    document.getElementById("jobs-next").disabled = last >= this.total;
  }

  show() {
    this.watch.start();
    if (!this.applicationsLoaded) this.loadApplications();
  }

  async loadApplications() {
    try {
      const catalog = await this.api.get("/jobs/applications");
      const select = document.getElementById("filter-application");
      select.append(...Object.keys(catalog).map((name) => el("option", { value: name, text: name })));
      this.applicationsLoaded = true;
    } catch {
      // the filter offers "any" only
    }
  }

  hide() {
    this.watch.stop();
  }
}

export class JobPage {
  constructor(api, features, stream) {
    this.api = api;
    this.features = features;
    this.id = null;
    this.watch = new Watch(api, () => `/jobs/${this.id}`, (job) => this.render(job), stream,
      (jobId) => jobId === null || jobId === this.id, (message) => message.kind !== "delete" && this.render(message.job) !== false);
    document.getElementById("job-delete").addEventListener("click", () => this.remove());
    const cancel = document.getElementById("job-cancel");
    cancel.hidden = true; // until the job is shown and can still be canceled
    cancel.addEventListener("click", () => this.cancel());
  }

  show(id) {
    this.id = id;
    document.getElementById("job-title").textContent = `Job ${id}`;
    this.watch.start();
  }

  hide() {
    this.watch.stop();
  }

  render(job) {
    if (job === null) {
      document.getElementById("job-title").textContent = `Job ${this.id} (not found)`;
      return;
    }
    document.getElementById("job-title").textContent = `Job ${job.id}: ${job.job_name}`;
    document.getElementById("job-status").replaceWith(Object.assign(badge(job.status), { id: "job-status" }));
    const app = job.application;
    const inputs = job.attributes.files_down;
    const rows = [
      ["Status", job.status],
      ["Application", `${app.application} ${app.version} ${app.entrypoint}`],
      ["Created", formatDate(job.date_created)],
      ["Started", formatDate(job.date_started) || "not yet"],
      ["Finished", formatDate(job.date_finished) || "not yet"],
      ["Priority", String(job.priority)],
      ["Environment", job.environment || "any"],
      ["Inputs", [inputs.config_id && `config/${inputs.config_id}`, ...(inputs.data_ids || []).map((d) => `data/${d}`),
        ...(inputs.artifact_ids || []).map((a) => `artifact/${a}`)].filter(Boolean).join(", ") || "none"],
      ["Hand-over to the workers", `${job.dispatch.status}, ${job.dispatch.attempts} attempt(s)` +
        (job.dispatch.last_error ? `; last error: ${job.dispatch.last_error}` : "") +
        (job.dispatch.next_attempt_at ? `; next attempt ${formatDate(job.dispatch.next_attempt_at)}` : "")],
    ];
    document.getElementById("job-details").replaceChildren(
      ...rows.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", { text: value })]),
    );
    document.getElementById("job-runtime").textContent = job.runtime_details || "(none yet)";
    document.getElementById("job-links").replaceChildren(
      ...Object.entries(job.paths_out).map(([kind, path]) =>
        el("li", {}, el("a", { href: `#/files?open=${encodeURIComponent(path + "/")}`, text: `${kind}: ${path}/` })),
      ),
    );
    const ended = ["finished", "error", "canceled"].includes(job.status);
    document.getElementById("job-cancel").hidden = ended || !this.features.cancel; // offered while it can be canceled
    if (this.features.jobEvents) this.history();
  }

  // The job's events, where the service records them (GET /jobs/{id}/events), oldest first.
  async history() {
    if (!this.watch.running) return;
    document.getElementById("job-history").hidden = false;
    try {
      const events = await this.api.get(`/jobs/${this.id}/events?limit=1000`);
      document.getElementById("job-events").replaceChildren(
        ...events.map((event) =>
          el("li", {}, el("time", { datetime: event.at, text: formatDate(event.at) }), ` ${event.kind}`,
            event.status ? el("span", {}, " ", badge(event.status)) : null,
            event.details ? el("span", { class: "event-details", text: ` ${event.details}` }) : null),
        ),
      );
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) say(`Could not load the job's history: ${error.message}`, true);
    }
  }

  async remove() {
    const sure = await ask(`Delete job ${this.id} and its output, log and artifact folders? This cannot be undone.`, {
      okLabel: "Delete",
    });
    if (!sure) return;
    this.watch.stop(); // before: the event stream may report the deletion before its answer arrives
    try {
      await this.api.request("DELETE", `/jobs/${this.id}`);
      say(`Deleted job ${this.id}`);
      location.hash = "#/jobs";
    } catch (error) {
      this.watch.start();
      say(`Could not delete the job: ${error.message}`, true);
    }
  }

  async cancel() {
    const sure = await ask(`Cancel job ${this.id}? It stops where it runs; its output, log and artifact folders are kept.`, {
      okLabel: "Cancel the job",
    });
    if (!sure) return;
    try {
      await this.api.request("POST", `/jobs/${this.id}/cancel`);
      this.watch.refresh();
    } catch (error) {
      say(`Could not cancel the job: ${error.message}`, true);
    }
  }
}

// Which field of the form an API refusal names, from its `detail` (the API names the field first).
const FIELD_WORDS = [
  ["env_vars", /^env var|env_vars/i],
  ["job_name", /job_name|job named/i],
  ["priority", /priority/i],
  ["environment", /^environment/i],
  ["entrypoint", /has no entrypoint|\.entrypoint/i],
  ["version", /has no version|\.version/i],
  ["application", /unknown application|^application/i],
  ["config_id", /config_id/i],
  ["data_ids", /data_ids/i],
  ["artifact_ids", /artifact_ids/i],
  ["hardware", /hardware|cpu_cores|memory|gpu_/i],
];

const INPUT_FOLDERS = { config_id: "config", data_ids: "data", artifact_ids: "artifact" };

export class JobForm {
  constructor(api, files) {
    this.api = api;
    this.files = files;
    this.catalog = null;
    this.form = document.getElementById("job-form");
    this.select = {
      application: document.getElementById("f-application"),
      version: document.getElementById("f-version"),
      entrypoint: document.getElementById("f-entrypoint"),
    };
    this.select.application.addEventListener("change", () => this.fillVersions());
    this.select.version.addEventListener("change", () => this.fillEntrypoints());
    this.select.entrypoint.addEventListener("change", () => this.fillEntrypoint());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  async show() {
    try {
      if (!this.catalog) {
        this.catalog = await this.api.get("/jobs/applications");
        this.fill(this.select.application, Object.keys(this.catalog));
        this.fillVersions();
      } else {
        await this.fillEntrypoint(); // the folders may have changed since
      }
    } catch (error) {
      say(`Could not load the applications: ${error.message}`, true);
    }
  }

  hide() {}

  fill(select, names) {
    const keep = select.value;
    select.replaceChildren(...names.map((name) => el("option", { value: name, text: name })));
    if (names.includes(keep)) select.value = keep;
  }

  fillVersions() {
    this.fill(this.select.version, Object.keys(this.catalog[this.select.application.value] || {}));
    this.fillEntrypoints();
  }

  fillEntrypoints() {
    const versions = this.catalog[this.select.application.value] || {};
    this.fill(this.select.entrypoint, Object.keys(versions[this.select.version.value] || {}));
    this.fillEntrypoint();
  }

  entrypoint() {
    const versions = this.catalog[this.select.application.value] || {};
    return (versions[this.select.version.value] || {})[this.select.entrypoint.value] || null;
  }

  // Inputs as choosers over the user's folders (never typed paths), env vars as the entrypoint lists.
  async fillEntrypoint() {
    const spec = this.entrypoint();
    const inputs = document.getElementById("inputs");
    const envs = document.getElementById("env-vars");
    const kept = this.values();
    const takes = spec ? Object.keys(spec.handler.files_down || {}) : [];
    const blocks = await Promise.all(
      takes.filter((key) => INPUT_FOLDERS[key]).map(async (key) => {
        const folder = INPUT_FOLDERS[key];
        let entries = [];
        try {
          entries = await this.files.list(`${folder}/`);
        } catch (error) {
          say(`Could not list ${folder}/: ${error.message}`, true);
        }
        const names = entries.map((info) => info.path.slice(folder.length + 1).replace(/\/$/, ""));
        const multiple = key !== "config_id";
        const select = el(
          "select",
          { id: `f-${key}`, name: key, multiple, "aria-describedby": `e-${key}`, size: multiple ? String(Math.min(5, Math.max(2, names.length))) : null },
          multiple ? null : el("option", { value: "", text: "(none)" }),
          names.map((name) => el("option", { value: name, text: `${folder}/${name}` })),
        );
        const chosen = kept[key];
        for (const option of select.options) option.selected = Array.isArray(chosen) ? chosen.includes(option.value) : option.value === chosen;
        return el(
          "div",
          { class: "field" },
          el("label", { for: `f-${key}`, text: multiple ? `${folder}/ (choose any)` : `${folder}/` }),
          select,
          names.length ? null : el("span", { class: "hint", text: `Nothing in ${folder}/ yet: upload it under Files.` }),
          el("span", { class: "error", id: `e-${key}` }),
        );
      }),
    );
    inputs.replaceChildren(el("legend", { text: "Inputs" }), ...blocks);
    const allowed = spec ? spec.app.env || [] : [];
    envs.replaceChildren(
      el("legend", { text: "Environment variables" }),
      ...(allowed.length ? allowed.map((name) =>
        el("div", { class: "field" }, el("label", { for: `env-${name}`, text: name }),
          el("input", { id: `env-${name}`, "data-env": name, value: (kept.env_vars || {})[name] || "" })))
        : [el("p", { class: "hint", text: "This entrypoint takes none." })]),
      el("span", { class: "error", id: "e-env_vars" }),
    );
  }

  values() {
    const value = (id) => {
      const node = document.getElementById(id);
      return node ? node.value.trim() : "";
    };
    const chosen = (id) => {
      const node = document.getElementById(id);
      return node ? [...node.selectedOptions].map((option) => option.value).filter(Boolean) : [];
    };
    const number = (id) => (value(id) === "" ? null : Number(value(id)));
    const envVars = {};
    for (const input of document.querySelectorAll("[data-env]")) if (input.value !== "") envVars[input.dataset.env] = input.value;
    const hardware = {
      cpu_cores: number("f-cpu_cores"), memory: number("f-memory"), gpu_model: value("f-gpu_model") || null,
      gpu_archi: value("f-gpu_archi") || null, gpu_mem: number("f-gpu_mem"),
    };
    return {
      config_id: chosen("f-config_id")[0] || null,
      data_ids: chosen("f-data_ids"),
      artifact_ids: chosen("f-artifact_ids"),
      env_vars: envVars,
      body: {
        job_name: value("f-job_name"),
        application: {
          application: this.select.application.value,
          version: this.select.version.value,
          entrypoint: this.select.entrypoint.value,
        },
        attributes: {
          files_down: { config_id: chosen("f-config_id")[0] || null, data_ids: chosen("f-data_ids"), artifact_ids: chosen("f-artifact_ids") },
          env_vars: envVars,
        },
        environment: value("f-environment") || null,
        priority: number("f-priority") ?? 0,
        hardware: Object.values(hardware).some((v) => v !== null) ? hardware : null,
      },
    };
  }

  clearErrors() {
    for (const node of this.form.querySelectorAll(".error")) node.textContent = "";
    for (const node of this.form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
    document.getElementById("form-error").textContent = "";
  }

  showError(detail) {
    const found = FIELD_WORDS.find(([, pattern]) => pattern.test(detail));
    const slot = found && document.getElementById(`e-${found[0]}`);
    if (!slot) {
      document.getElementById("form-error").textContent = detail;
      return;
    }
    slot.textContent = detail;
    const input = document.getElementById(`f-${found[0]}`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  }

  async submit() {
    this.clearErrors();
    const { body } = this.values();
    if (!body.job_name) return this.showError("job_name: give the job a name");
    const button = document.getElementById("job-submit");
    button.disabled = true;
    try {
      const job = await this.api.request("POST", "/jobs", { json: body });
      say(`Started job ${job.id} (${job.job_name})`);
      document.getElementById("f-job_name").value = "";
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      if (error instanceof ApiError) this.showError(error.detail);
      else say(`Could not start the job: ${error.message}`, true);
    } finally {
      button.disabled = false;
    }
  }
}
