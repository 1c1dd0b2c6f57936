// Small DOM helpers shared by the views.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

let statusTimer = null;

// A message in the page's live region (read out by screen readers).
export function say(message, isError = false) {
  const status = document.getElementById("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
  clearTimeout(statusTimer);
  if (!isError) statusTimer = setTimeout(() => (status.textContent = ""), 8000);
}

// A modal question; with `input`, also asks for a value. Resolves to the value, true, or null.
export function ask(question, { input = null, okLabel = "OK" } = {}) {
  const dialog = document.getElementById("confirm");
  const field = document.getElementById("confirm-input-field");
  const box = document.getElementById("confirm-input");
  document.getElementById("confirm-text").textContent = question;
  document.getElementById("confirm-ok").textContent = okLabel;
  field.hidden = input === null;
  if (input !== null) {
    document.getElementById("confirm-input-label").textContent = input.label;
    box.value = input.value || "";
  }
  dialog.returnValue = "";
  dialog.showModal();
  (input !== null ? box : document.getElementById("confirm-cancel")).focus();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        if (dialog.returnValue !== "ok") resolve(null);
        else resolve(input !== null ? box.value.trim() || null : true);
      },
      { once: true },
    );
  });
}

export function formatDate(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toLocaleString();
}

export function badge(status) {
  return el("span", { class: `badge badge-${status}`, text: status });
}

// Bytes of a size as the API writes it ("1.2 kB", "19 Bytes"), roughly.
export function parseSize(text) {
  const match = /^([\d.]+)\s*(\w+)/.exec(text || "");
  if (!match) return 0;
  const units = { byte: 1, bytes: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12 };
  return Number(match[1]) * (units[match[2].toLowerCase()] || 1);
}

// Bytes as the API writes sizes (decimal units): "19 Bytes", "1.2 kB", "3.4 MB".
export function formatSize(bytes) {
  if (bytes < 1000) return `${Math.round(bytes)} Bytes`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

// Save a Blob under a file name (the browser's download).
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
