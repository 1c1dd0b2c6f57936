// Files: the five folders as a tree with sizes; new folder, rename, delete, download (a folder as a
// zip); uploads by picker or drag and drop through the /url flow, several at a time, with progress
// per file and in total; previews of text and of images (TIFF stacks by their first frame, through
// the service's thumbnail endpoint, since browsers do not render TIFF).

import { ApiError, filesUrl } from "./api.js";
import { ask, el, formatSize, parseSize, saveBlob, say } from "./ui.js";

const TEXT = /\.(ya?ml|txt|json|csv|log|md|py|toml|ini|cfg|sh)$/i;
const IMAGE = /\.(tiff?|png|jpe?g|gif|bmp|webp)$/i;
const TEXT_PREVIEW_BYTES = 1e6;
const PARALLEL_UPLOADS = 4;
const INPUT_ROOTS = ["config/", "data/", "artifact/"];

function parentOf(path) {
  const trimmed = path.endsWith("/") ? path.slice(0, -1) : path;
  const cut = trimmed.lastIndexOf("/");
  return cut < 0 ? "" : trimmed.slice(0, cut + 1);
}

function nameOf(path) {
  const trimmed = path.endsWith("/") ? path.slice(0, -1) : path;
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

export class FilesView {
  constructor(api) {
    this.api = api;
    this.children = new Map(); // folder path ("" = root) -> [FileInfo]
    this.expanded = new Set([""]);
    this.selected = null; // FileInfo
    this.tree = document.getElementById("tree");
    this.previewUrl = null;
    const on = (id, handler) => document.getElementById(id).addEventListener("click", () => handler.call(this));
    on("new-folder", this.newFolder);
    on("download", this.download);
    on("rename", this.rename);
    on("delete", this.remove);
    on("refresh-files", this.refresh);
    for (const id of ["pick-files", "pick-folder"]) {
      const input = document.getElementById(id);
      input.addEventListener("change", () => {
        const picked = [...input.files].map((file) => ({ file, relative: file.webkitRelativePath || file.name }));
        input.value = "";
        this.upload(picked);
      });
    }
    const zone = document.getElementById("drop-zone");
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", async (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      const entries = [...event.dataTransfer.items].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry());
      const picked = entries.every(Boolean)
        ? (await Promise.all(entries.map((entry) => walkEntry(entry, "")))).flat()
        : [...event.dataTransfer.files].map((file) => ({ file, relative: file.name }));
      this.upload(picked);
    });
  }

  async show(_id, params) {
    if (!this.children.has("")) await this.refresh();
    const open = params && params.get("open");
    if (open) await this.reveal(open);
  }

  // A folder's own entries; its subfolders with the total size of their files (one recursive listing;
  // a tree too large for one falls back to the entries alone).
  async list(folder) {
    const base = folder ? filesUrl(folder) : "/files/";
    let entries;
    let recursive = true;
    try {
      entries = await this.api.get(`${base}?show_dirs=true&recursive=true`);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 413)) throw error;
      recursive = false;
      entries = await this.api.get(`${base}?show_dirs=true`);
    }
    const own = [];
    const totals = new Map();
    for (const info of entries) {
      const rest = info.path.slice(folder.length);
      const cut = rest.indexOf("/");
      if (cut < 0 || cut === rest.length - 1) own.push({ ...info });
      if (info.type === "file" && cut >= 0) {
        const top = folder + rest.slice(0, cut + 1);
        totals.set(top, (totals.get(top) || 0) + parseSize(info.size));
      }
    }
    if (recursive) for (const info of own) if (info.type === "directory") info.size = formatSize(totals.get(info.path) || 0);
    this.children.set(folder, own);
    return own;
  }

  async refresh() {
    try {
      await Promise.all([...this.expanded].map((folder) => this.list(folder).catch(() => this.expanded.delete(folder))));
    } catch (error) {
      say(`Could not list your files: ${error.message}`, true);
    }
    this.render();
  }

  // Expand the folders down to `path` (a folder, ending in "/") and select it.
  async reveal(path) {
    const parts = path.replace(/\/$/, "").split("/");
    let folder = "";
    for (const part of parts) {
      folder += `${part}/`;
      this.expanded.add(folder);
      try {
        await this.list(folder);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404)) throw error;
        this.expanded.delete(folder);
        break;
      }
    }
    this.selected = { path: folder, type: "directory", size: "" };
    this.render();
    const row = this.tree.querySelector(`[data-path="${CSS.escape(folder)}"]`);
    if (row) row.focus();
  }

  render() {
    const build = (folder) =>
      (this.children.get(folder) || []).map((info) => {
        const isDir = info.type === "directory";
        const open = isDir && this.expanded.has(info.path);
        const button = el(
          "button",
          {
            type: "button",
            class: `entry ${isDir ? "folder" : "file"}`,
            "data-path": info.path,
            "aria-expanded": isDir ? String(open) : null,
            "aria-pressed": String(this.selected !== null && this.selected.path === info.path),
            onclick: () => this.choose(info),
          },
          el("span", { class: "icon", "aria-hidden": "true", text: isDir ? (open ? "▾" : "▸") : "·" }),
          nameOf(info.path),
        );
        return el(
          "li",
          {},
          el("div", { class: "row" }, button, el("span", { class: "size", text: info.size })),
          open ? el("ul", {}, build(info.path)) : null,
        );
      });
    this.tree.replaceChildren(...build(""));
    document.getElementById("selected-path").textContent = this.selected ? this.selected.path : "(none)";
  }

  async choose(info) {
    this.selected = info;
    if (info.type === "directory") {
      if (this.expanded.has(info.path)) {
        this.expanded.delete(info.path);
      } else {
        this.expanded.add(info.path);
        try {
          await this.list(info.path);
        } catch (error) {
          say(`Could not open ${info.path}: ${error.message}`, true);
        }
      }
      this.render();
      this.tree.querySelector(`[data-path="${CSS.escape(info.path)}"]`).focus();
      return;
    }
    this.render();
    this.tree.querySelector(`[data-path="${CSS.escape(info.path)}"]`).focus();
    await this.preview(info);
  }

  // Where new folders and uploads go: the selected folder, or the selected file's.
  targetFolder() {
    if (!this.selected) return null;
    return this.selected.type === "directory" ? this.selected.path : parentOf(this.selected.path);
  }

  requireInputFolder() {
    const folder = this.targetFolder();
    if (!folder || !INPUT_ROOTS.some((root) => folder.startsWith(root))) {
      say("Select a folder under config/, data/ or artifact/ first.", true);
      return null;
    }
    return folder;
  }

  async newFolder() {
    const folder = this.requireInputFolder();
    if (!folder) return;
    const name = await ask(`New folder in ${folder}`, { input: { label: "Folder name" }, okLabel: "Create" });
    if (!name) return;
    try {
      await this.api.request("POST", filesUrl(`${folder}${name}`, "/"));
      this.expanded.add(folder);
      say(`Created ${folder}${name}/`);
    } catch (error) {
      say(`Could not create the folder: ${error.message}`, true);
    }
    await this.refresh();
  }

  async rename() {
    if (!this.selected) return say("Select a file or an empty folder first.", true);
    const source = this.selected.path;
    const target = await ask(`Rename ${source} to`, {
      input: { label: "New path", value: source.replace(/\/$/, "") },
      okLabel: "Rename",
    });
    if (!target) return;
    try {
      const moved = await this.api.request("PUT", filesUrl(source.replace(/\/$/, "")), { json: { path: target } });
      this.selected = moved;
      say(`Renamed to ${moved.path}`);
    } catch (error) {
      say(`Could not rename: ${error.message}`, true);
    }
    await this.refresh();
  }

  async remove() {
    if (!this.selected) return say("Select a file or folder first.", true);
    const path = this.selected.path;
    const sure = await ask(`Delete ${path}${path.endsWith("/") ? " and everything in it" : ""}? This cannot be undone.`, {
      okLabel: "Delete",
    });
    if (!sure) return;
    try {
      await this.api.request("DELETE", filesUrl(path.replace(/\/$/, "")));
      this.selected = null;
      say(`Deleted ${path}`);
    } catch (error) {
      say(`Could not delete: ${error.message}`, true);
    }
    await this.refresh();
  }

  // A download asks for a download request (/url): a pre-signed one (S3) is opened as it is; one to
  // the service itself carries our token, so the page fetches the bytes and saves them.
  async download() {
    if (!this.selected) return say("Select a file or folder first.", true);
    const path = this.selected.path.replace(/\/$/, "");
    const name = this.selected.type === "directory" ? `${nameOf(path)}.zip` : nameOf(path);
    try {
      const plan = await this.api.get(filesUrl(path, "/url"));
      const headers = plan.headers || {};
      if (!Object.keys(headers).length) {
        const link = el("a", { href: plan.url, download: name });
        document.body.append(link);
        link.click();
        link.remove();
        return;
      }
      const response = await this.api.request("GET", filesUrl(path, "/download"), { raw: true });
      saveBlob(await response.blob(), name);
      say(`Downloaded ${name}`);
    } catch (error) {
      say(`Could not download: ${error.message}`, true);
    }
  }

  async preview(info) {
    const box = document.getElementById("preview");
    const text = document.getElementById("preview-text");
    const image = document.getElementById("preview-image");
    text.hidden = true;
    image.hidden = true;
    if (this.previewUrl) URL.revokeObjectURL(this.previewUrl);
    this.previewUrl = null;
    document.getElementById("preview-name").textContent = info.path;
    box.hidden = false;
    box.scrollIntoView({ block: "nearest" }); // below the tree on a phone
    try {
      if (TEXT.test(info.path) && parseSize(info.size) <= TEXT_PREVIEW_BYTES) {
        const response = await this.api.request("GET", filesUrl(info.path, "/download"), { raw: true });
        text.textContent = await response.text();
        text.hidden = false;
      } else if (IMAGE.test(info.path)) {
        const response = await this.api.request("GET", `${filesUrl(info.path, "/thumbnail")}?size=512`, { raw: true });
        this.previewUrl = URL.createObjectURL(await response.blob());
        image.alt = `Preview of ${nameOf(info.path)} (first frame)`;
        image.src = this.previewUrl;
        image.hidden = false;
      } else {
        text.textContent = "No preview for this kind of file: download it to look inside.";
        text.hidden = false;
      }
    } catch (error) {
      text.textContent = `No preview: ${error.message}`;
      text.hidden = false;
    }
  }

  // Uploads: each file into `<target>/<its folder in the drop or pick>`, PARALLEL_UPLOADS at a time.
  async upload(picked) {
    if (!picked.length) return;
    const target = this.requireInputFolder();
    if (!target) return;
    const section = document.getElementById("uploads");
    const list = document.getElementById("upload-list");
    const total = document.getElementById("upload-total");
    const totalText = document.getElementById("upload-total-text");
    section.hidden = false;
    list.replaceChildren();
    const totalBytes = picked.reduce((sum, item) => sum + item.file.size, 0) || 1;
    const loaded = new Array(picked.length).fill(0);
    const update = () => {
      const sum = loaded.reduce((a, b) => a + b, 0);
      total.value = sum / totalBytes;
      totalText.textContent = `${Math.round((100 * sum) / totalBytes)} % of ${picked.length} files`;
    };
    const rows = picked.map((item, index) => {
      const bar = el("progress", { max: "1", value: "0", id: `upload-${index}` });
      const label = el("label", { for: `upload-${index}`, text: item.relative });
      const state = el("span", { class: "upload-state", text: "waiting" });
      list.append(el("li", {}, label, bar, state));
      return { bar, state };
    });
    update();
    const plans = new Map(); // folder -> upload request (one /url call per folder)
    let next = 0;
    let failed = 0;
    const worker = async () => {
      while (next < picked.length) {
        const index = next++;
        const { file, relative } = picked[index];
        const folder = `${target}${parentOf(relative)}`;
        const { bar, state } = rows[index];
        for (let attempt = 0; ; attempt++) {
          try {
            if (!plans.has(folder)) plans.set(folder, this.api.request("POST", filesUrl(folder.replace(/\/$/, ""), "/url")));
            const plan = await plans.get(folder);
            state.textContent = "uploading";
            await sendFile(plan, file, (done) => {
              loaded[index] = done;
              bar.value = file.size ? done / file.size : 1;
              update();
            });
            loaded[index] = file.size;
            bar.value = 1;
            state.textContent = "done";
            break;
          } catch (error) {
            plans.delete(folder);
            if (error instanceof ApiError && error.status === 401 && attempt < 2 && this.api.reauthenticate) {
              // The session ended mid-upload: sign in again, then send this file again.
              state.textContent = "waiting for sign-in";
              this.api.clearSession();
              await this.api.reauthenticate("Your session has ended: sign in again to finish the uploads.");
              continue;
            }
            failed++;
            loaded[index] = 0;
            state.textContent = `failed: ${error.message}`;
            break;
          }
        }
        update();
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_UPLOADS, picked.length) }, worker));
    totalText.textContent = failed ? `${picked.length - failed} of ${picked.length} files uploaded` : `all ${picked.length} files uploaded`;
    say(failed ? `${failed} uploads failed` : `Uploaded ${picked.length} files to ${target}`, failed > 0);
    this.expanded.add(target);
    await this.refresh();
  }

  hide() {}
}

// One file through a FileHTTPRequest (POST, multipart: its `data` fields, then the `file` part), with
// XMLHttpRequest for upload progress (fetch has none for request bodies).
function sendFile(plan, file, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open(plan.method.toUpperCase(), plan.url);
    for (const [name, value] of Object.entries(plan.headers || {})) request.setRequestHeader(name, value);
    request.upload.addEventListener("progress", (event) => onProgress(Math.min(event.loaded, file.size)));
    request.addEventListener("load", () => {
      if (request.status >= 200 && request.status < 300) return resolve();
      let detail = request.statusText;
      try {
        detail = JSON.parse(request.responseText).detail || detail;
      } catch {
        // not JSON (S3 answers XML)
      }
      reject(new ApiError(request.status, detail));
    });
    request.addEventListener("error", () => reject(new ApiError(0, "the connection failed")));
    const body = new FormData();
    for (const [name, value] of Object.entries(plan.data || {})) body.append(name, value);
    body.append("file", file, file.name);
    request.send(body);
  });
}

// A dropped file or folder (FileSystemEntry) as [{file, relative}].
async function walkEntry(entry, prefix) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    return [{ file, relative: `${prefix}${entry.name}` }];
  }
  const reader = entry.createReader();
  const children = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    children.push(...batch);
  }
  const nested = await Promise.all(children.map((child) => walkEntry(child, `${prefix}${entry.name}/`)));
  return nested.flat();
}
