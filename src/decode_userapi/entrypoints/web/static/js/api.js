// The HTTP API as the page calls it: one place that adds the bearer token, turns error answers into
// ApiError (with the API's `detail`), and, on a 401, asks the user to sign in again and retries:
// whatever the page held (a half-filled form, an open folder) stays as it was.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.detail = detail || `HTTP ${status}`;
  }
}

const TOKEN_KEY = "decode-userapi.session";

export class Api {
  constructor() {
    this.session = null; // {token, username, expiresAt}
    this.reauthenticate = null; // async (reason) => void, set by the sign-in dialog
    try {
      const saved = JSON.parse(sessionStorage.getItem(TOKEN_KEY) || "null");
      if (saved && saved.token && saved.expiresAt > Date.now()) this.session = saved;
    } catch {
      sessionStorage.removeItem(TOKEN_KEY);
    }
  }

  signedIn() {
    return this.session !== null;
  }

  setSession(token, expiresIn, username) {
    // sessionStorage: this tab only, gone when it closes; a reload keeps the user signed in.
    this.session = { token, username, expiresAt: Date.now() + expiresIn * 1000 };
    sessionStorage.setItem(TOKEN_KEY, JSON.stringify(this.session));
  }

  clearSession() {
    this.session = null;
    sessionStorage.removeItem(TOKEN_KEY);
  }

  authHeader() {
    return this.session ? { Authorization: `Bearer ${this.session.token}` } : {};
  }

  // fetch with the token; a 401 (expired or revoked) opens the sign-in dialog, then the same call is
  // sent again. `raw` answers the Response itself (downloads, 304s).
  async request(method, path, { json, form, headers = {}, raw = false, signal } = {}) {
    for (let attempt = 0; ; attempt++) {
      const init = { method, headers: { ...this.authHeader(), ...headers }, cache: "no-store", signal };
      if (json !== undefined) {
        init.body = JSON.stringify(json);
        init.headers["Content-Type"] = "application/json";
      } else if (form !== undefined) {
        init.body = new URLSearchParams(form);
      }
      const response = await fetch(path, init);
      if (response.status === 401 && this.reauthenticate && attempt < 3) {
        this.clearSession();
        await this.reauthenticate("Your session has ended: sign in again to continue where you were.");
        continue;
      }
      if (raw) {
        if (!response.ok && response.status !== 304) throw await ApiError.from(response);
        return response;
      }
      if (!response.ok) throw await ApiError.from(response);
      if (response.status === 204) return null;
      const text = await response.text();
      return text ? JSON.parse(text) : null;
    }
  }

  get(path, options) {
    return this.request("GET", path, options);
  }
}

ApiError.from = async function (response) {
  let detail = "";
  try {
    const body = await response.json();
    detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    detail = response.statusText;
  }
  return new ApiError(response.status, detail);
};

// A path in the user's tree as it goes into a URL: each segment percent-encoded, slashes kept.
export function filesUrl(path, action = "") {
  const encoded = path.split("/").map(encodeURIComponent).join("/");
  return `/files/${encoded}${action}`;
}
