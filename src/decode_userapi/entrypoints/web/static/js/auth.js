// Sign-in: the built-in identity (POST /token, form username/password) or Cognito
// (USER_PASSWORD_AUTH against the pool /access_info names). The token is kept in memory and in this
// tab's sessionStorage and sent as `Authorization: Bearer`; the page never relies on a cookie, so a
// page on another site cannot make the browser act for the user (no CSRF), and signing out is only
// forgetting the token.

import { ApiError } from "./api.js";

export class SignIn {
  constructor(api, { accessInfo, features, config, onSignedIn }) {
    this.api = api;
    this.accessInfo = accessInfo;
    this.features = features;
    this.config = config;
    this.onSignedIn = onSignedIn;
    this.dialog = document.getElementById("sign-in");
    this.form = document.getElementById("sign-in-form");
    this.error = document.getElementById("sign-in-error");
    this.reason = document.getElementById("sign-in-reason");
    this.registerButton = document.getElementById("register");
    this.waiting = [];
    this.registerButton.hidden = !(accessInfo.local && features.register);
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit(false);
    });
    this.registerButton.addEventListener("click", () => this.submit(true));
    this.dialog.addEventListener("cancel", (event) => event.preventDefault()); // Escape does not skip it
    api.reauthenticate = (reason) => this.ask(reason);
  }

  // Open the dialog (modal, over the page as it is); resolves once signed in.
  ask(reason = "") {
    this.reason.textContent = reason;
    this.error.textContent = "";
    if (!this.dialog.open) this.dialog.showModal();
    document.getElementById(this.form.username.value ? "password" : "username").focus();
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  async submit(register) {
    const username = this.form.username.value.trim();
    const password = this.form.password.value;
    if (!username || !password) {
      this.error.textContent = "Enter your username and password.";
      return;
    }
    this.error.textContent = "";
    try {
      if (this.accessInfo.cognito) {
        await this.cognito(username, password);
      } else {
        if (register) await this.api.request("POST", "/user", { form: { username, password } });
        const token = await this.api.request("POST", this.accessInfo.local.token_url || "/token", {
          form: { username, password },
        });
        this.api.setSession(token.id_token, token.expires_in, username);
      }
    } catch (error) {
      this.error.textContent = error instanceof ApiError ? error.detail : String(error.message || error);
      return;
    }
    this.form.password.value = "";
    this.dialog.close();
    this.onSignedIn(username);
    const waiting = this.waiting;
    this.waiting = [];
    waiting.forEach((resolve) => resolve());
  }

  async cognito(username, password) {
    const { client_id: clientId } = this.accessInfo.cognito;
    const endpoint = this.config.cognito_endpoint;
    const response = await fetch(endpoint, {
      method: "POST",
      headers: {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
      },
      body: JSON.stringify({
        AuthFlow: "USER_PASSWORD_AUTH",
        ClientId: clientId,
        AuthParameters: { USERNAME: username, PASSWORD: password },
      }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(response.status, body.message || body.__type || "sign-in refused");
    const result = body.AuthenticationResult;
    if (!result || !result.IdToken) throw new ApiError(400, `Cognito asks for more (${body.ChallengeName || "unknown"})`);
    this.api.setSession(result.IdToken, result.ExpiresIn || 3600, username);
  }
}
